output "cluster_id" {
  description = "OCID of the OKE cluster."
  value       = oci_containerengine_cluster.main.id
}

output "cluster_private_endpoint" {
  description = "Private Kubernetes API endpoint (reachable from the VCN, a bastion or a VPN only)."
  value       = oci_containerengine_cluster.main.endpoints[0].private_endpoint
}

output "receipt_key_id" {
  description = "OCID of the ECDSA P-256 HSM key that signs receipts; pass to the chart as oci.kmsKeyId."
  value       = oci_kms_key.receipt.id
}

output "kms_crypto_endpoint" {
  description = "Crypto endpoint of the vault; pass to the chart as oci.kmsCryptoEndpoint."
  value       = oci_kms_vault.main.crypto_endpoint
}

output "audit_bucket" {
  description = "Name of the audit log bucket with its retention rule; pass to the chart as oci.auditBucket."
  value       = oci_objectstorage_bucket.audit.name
}

output "oci_services_label" {
  description = "Service gateway label of the region's Oracle Services Network (a name, not a CIDR); look up its public IP ranges for the chart's network.ociServiceCidrs."
  value       = data.oci_core_services.osn.services[0].cidr_block
}

output "log_id" {
  description = "OCID of the Logging log that records writes to the audit bucket."
  value       = oci_logging_log.audit_bucket_writes.id
}

output "receipt_key_version_id" {
  description = "OCID of the receipt key's current version; pass to the chart as oci.kmsKeyVersionId."
  value       = oci_kms_key.receipt.current_key_version
}

output "kms_management_endpoint" {
  description = "Management endpoint of the vault, from which the mint reads public keys; pass to the chart as oci.kmsManagementEndpoint."
  value       = oci_kms_vault.main.management_endpoint
}

output "object_storage_namespace" {
  description = "Object Storage namespace of the tenancy; pass to the chart as oci.namespace."
  value       = data.oci_objectstorage_namespace.main.namespace
}
