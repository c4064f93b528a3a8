resource "oci_containerengine_cluster" "main" {
  compartment_id     = var.compartment_ocid
  kubernetes_version = var.kubernetes_version
  name               = "${var.name_prefix}-oke"
  vcn_id             = oci_core_vcn.main.id
  # Enhanced clusters are required for self-managed nodes and workload identity.
  type = "ENHANCED_CLUSTER"

  cluster_pod_network_options {
    cni_type = "OCI_VCN_IP_NATIVE"
  }

  endpoint_config {
    subnet_id            = oci_core_subnet.private["api"].id
    is_public_ip_enabled = false
  }

  # Kubernetes Secrets are encrypted at rest with a vault key.
  kms_key_id = oci_kms_key.storage.id

  options {
    service_lb_subnet_ids = [oci_core_subnet.private["lb"].id]
  }
}

# General nodes: the mint API and the Ray head.
resource "oci_containerengine_node_pool" "general" {
  cluster_id         = oci_containerengine_cluster.main.id
  compartment_id     = var.compartment_ocid
  kubernetes_version = var.kubernetes_version
  name               = "${var.name_prefix}-general"
  node_shape         = var.general_node_shape

  node_shape_config {
    ocpus         = var.node_ocpus
    memory_in_gbs = var.node_memory_gbs
  }

  node_source_details {
    source_type = "IMAGE"
    image_id    = var.node_image_ocid
  }

  node_config_details {
    size                                = var.general_node_count
    is_pv_encryption_in_transit_enabled = true
    kms_key_id                          = oci_kms_key.storage.id

    dynamic "placement_configs" {
      for_each = data.oci_identity_availability_domains.ads.availability_domains
      content {
        availability_domain = placement_configs.value.name
        subnet_id           = oci_core_subnet.private["nodes"].id
      }
    }

    node_pool_pod_network_option_details {
      cni_type       = "OCI_VCN_IP_NATIVE"
      pod_subnet_ids = [oci_core_subnet.private["pods"].id]
    }
  }
}

# Confidential signer nodes, one instance pool per availability domain. OKE managed node pools
# have no platform_config, so these are self-managed nodes: an instance configuration with
# AMD SEV memory encryption, joined to the cluster by the OKE init script in cloud-init.
resource "oci_core_instance_configuration" "confidential" {
  compartment_id = var.compartment_ocid
  display_name   = "${var.name_prefix}-confidential"

  instance_details {
    instance_type = "compute"

    launch_details {
      compartment_id = var.compartment_ocid
      shape          = var.confidential_node_shape

      shape_config {
        ocpus         = var.node_ocpus
        memory_in_gbs = var.node_memory_gbs
      }

      platform_config {
        type                         = "AMD_VM"
        is_memory_encryption_enabled = true
      }

      source_details {
        source_type = "image"
        image_id    = var.node_image_ocid
      }

      create_vnic_details {
        subnet_id        = oci_core_subnet.private["nodes"].id
        assign_public_ip = false
      }

      instance_options {
        are_legacy_imds_endpoints_disabled = true
      }

      is_pv_encryption_in_transit_enabled = true

      metadata = {
        apiserver_host  = oci_containerengine_cluster.main.endpoints[0].private_endpoint
        cluster_ca_cert = var.cluster_ca_cert
        # The Helm chart's nodeSelector matches this label; the taint keeps other pods off.
        oke-initial-node-labels = "ztmint.io/node-group=confidential"
        user_data               = base64encode(file("${path.module}/cloud-init-confidential.sh"))
      }
    }
  }
}

resource "oci_core_instance_pool" "confidential" {
  for_each                  = { for ad in data.oci_identity_availability_domains.ads.availability_domains : ad.name => ad }
  compartment_id            = var.compartment_ocid
  instance_configuration_id = oci_core_instance_configuration.confidential.id
  size                      = var.confidential_nodes_per_ad
  display_name              = "${var.name_prefix}-confidential-${each.key}"

  placement_configurations {
    availability_domain = each.value.name
    primary_subnet_id   = oci_core_subnet.private["nodes"].id
    fault_domains       = ["FAULT-DOMAIN-1", "FAULT-DOMAIN-2", "FAULT-DOMAIN-3"]
  }
}
