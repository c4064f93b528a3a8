# Self-managed confidential nodes join the cluster as members of this dynamic group.
resource "oci_identity_dynamic_group" "confidential_nodes" {
  compartment_id = var.tenancy_ocid
  name           = "${var.name_prefix}-confidential-nodes"
  description    = "Self-managed confidential OKE nodes of ${var.name_prefix}"
  matching_rule  = "ALL {instance.compartment.id = '${var.compartment_ocid}', tag.Oracle-Tags.CreatedBy.value = 'oke'}"
}

# Least privilege through OKE workload identity: only the mint's ServiceAccount may sign with
# the receipt key and write the audit bucket. No API key or auth token exists for it.
resource "oci_identity_policy" "ztmint" {
  compartment_id = var.compartment_ocid
  name           = "${var.name_prefix}-workloads"
  description    = "ztmint: node join, receipt signing and audit log writes"
  statements = [
    "Allow dynamic-group ${oci_identity_dynamic_group.confidential_nodes.name} to {CLUSTER_JOIN} in compartment id ${var.compartment_ocid}",
    "Allow any-user to use keys in compartment id ${var.compartment_ocid} where all {request.principal.type = 'workload', request.principal.namespace = '${var.kubernetes_namespace}', request.principal.service_account = '${var.mint_service_account}', request.principal.cluster_id = '${oci_containerengine_cluster.main.id}', target.key.id = '${oci_kms_key.receipt.id}'}",
    "Allow any-user to manage objects in compartment id ${var.compartment_ocid} where all {request.principal.type = 'workload', request.principal.namespace = '${var.kubernetes_namespace}', request.principal.service_account = '${var.mint_service_account}', request.principal.cluster_id = '${oci_containerengine_cluster.main.id}', target.bucket.name = '${oci_objectstorage_bucket.audit.name}', any {request.permission = 'OBJECT_CREATE', request.permission = 'OBJECT_INSPECT', request.permission = 'OBJECT_READ'}}",
  ]
}
