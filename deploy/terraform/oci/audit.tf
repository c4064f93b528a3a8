data "oci_objectstorage_namespace" "main" {
  compartment_id = var.compartment_ocid
}

# The audit log bucket. The retention rule makes every object unchangeable and undeletable for
# audit_retention_days. OCI does not allow retention rules on a versioned bucket, so versioning
# stays off.
resource "oci_objectstorage_bucket" "audit" {
  compartment_id = var.compartment_ocid
  namespace      = data.oci_objectstorage_namespace.main.namespace
  name           = "${var.name_prefix}-audit"
  access_type    = "NoPublicAccess"
  storage_tier   = "Standard"
  versioning     = "Disabled"
  kms_key_id     = oci_kms_key.storage.id

  retention_rules {
    display_name = "audit-log-retention"
    duration {
      time_amount = var.audit_retention_days
      time_unit   = "DAYS"
    }
  }
}

resource "oci_logging_log_group" "main" {
  compartment_id = var.compartment_ocid
  display_name   = "${var.name_prefix}-logs"
}

# Object Storage write events of the audit bucket, kept by OCI Logging.
resource "oci_logging_log" "audit_bucket_writes" {
  display_name       = "${var.name_prefix}-audit-bucket-writes"
  log_group_id       = oci_logging_log_group.main.id
  log_type           = "SERVICE"
  is_enabled         = true
  retention_duration = var.log_retention_days

  configuration {
    compartment_id = var.compartment_ocid
    source {
      category    = "write"
      resource    = oci_objectstorage_bucket.audit.name
      service     = "objectstorage"
      source_type = "OCISERVICE"
    }
  }
}
