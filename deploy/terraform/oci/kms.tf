resource "oci_kms_vault" "main" {
  compartment_id = var.compartment_ocid
  display_name   = "${var.name_prefix}-vault"
  vault_type     = "DEFAULT"
}

# The receipt key: ECDSA P-256 in the HSM. The mint signs receipts (ES256) with it through the
# KMS crypto endpoint; the private key never leaves the HSM.
resource "oci_kms_key" "receipt" {
  compartment_id      = var.compartment_ocid
  display_name        = "${var.name_prefix}-receipt-p256"
  management_endpoint = oci_kms_vault.main.management_endpoint
  protection_mode     = "HSM"

  key_shape {
    algorithm = "ECDSA"
    length    = 32
    curve_id  = "NIST_P256"
  }
}

# AES key for Kubernetes Secrets, boot volumes and the audit bucket.
resource "oci_kms_key" "storage" {
  compartment_id      = var.compartment_ocid
  display_name        = "${var.name_prefix}-storage-aes"
  management_endpoint = oci_kms_vault.main.management_endpoint
  protection_mode     = "HSM"

  key_shape {
    algorithm = "AES"
    length    = 32
  }
}
