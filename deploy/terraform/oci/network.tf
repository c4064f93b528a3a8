data "oci_identity_availability_domains" "ads" {
  compartment_id = var.tenancy_ocid
}

# The Oracle Services Network (KMS, Object Storage, Logging, OKE control plane) reached privately.
data "oci_core_services" "osn" {
  filter {
    name   = "name"
    values = ["All .* Services In Oracle Services Network"]
    regex  = true
  }
}

resource "oci_core_vcn" "main" {
  compartment_id = var.compartment_ocid
  cidr_blocks    = [var.vcn_cidr]
  display_name   = "${var.name_prefix}-vcn"
  dns_label      = "ztmint"
}

resource "oci_core_nat_gateway" "main" {
  compartment_id = var.compartment_ocid
  vcn_id         = oci_core_vcn.main.id
  display_name   = "${var.name_prefix}-nat"
}

resource "oci_core_service_gateway" "main" {
  compartment_id = var.compartment_ocid
  vcn_id         = oci_core_vcn.main.id
  display_name   = "${var.name_prefix}-sgw"
  services {
    service_id = data.oci_core_services.osn.services[0].id
  }
}

# Private subnets only: no internet gateway, no public IPs. Egress to OCI services goes through
# the service gateway; image pulls go through the NAT gateway.
resource "oci_core_route_table" "private" {
  compartment_id = var.compartment_ocid
  vcn_id         = oci_core_vcn.main.id
  display_name   = "${var.name_prefix}-private"
  route_rules {
    destination       = data.oci_core_services.osn.services[0].cidr_block
    destination_type  = "SERVICE_CIDR_BLOCK"
    network_entity_id = oci_core_service_gateway.main.id
  }
  route_rules {
    destination       = "0.0.0.0/0"
    destination_type  = "CIDR_BLOCK"
    network_entity_id = oci_core_nat_gateway.main.id
  }
}

resource "oci_core_security_list" "private" {
  compartment_id = var.compartment_ocid
  vcn_id         = oci_core_vcn.main.id
  display_name   = "${var.name_prefix}-private"
  egress_security_rules {
    destination = "0.0.0.0/0"
    protocol    = "6"
  }
  ingress_security_rules {
    source   = var.vcn_cidr
    protocol = "all"
  }
}

locals {
  subnets = {
    api     = cidrsubnet(var.vcn_cidr, 8, 0)
    nodes   = cidrsubnet(var.vcn_cidr, 8, 10)
    pods    = cidrsubnet(var.vcn_cidr, 4, 2)
    lb      = cidrsubnet(var.vcn_cidr, 8, 20)
  }
}

resource "oci_core_subnet" "private" {
  for_each                   = local.subnets
  compartment_id             = var.compartment_ocid
  vcn_id                     = oci_core_vcn.main.id
  cidr_block                 = each.value
  display_name               = "${var.name_prefix}-${each.key}"
  dns_label                  = each.key
  prohibit_public_ip_on_vnic = true
  route_table_id             = oci_core_route_table.private.id
  security_list_ids          = [oci_core_security_list.private.id]
}
