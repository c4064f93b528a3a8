terraform {
  required_version = ">= 1.6.0"
  required_providers {
    oci = {
      source  = "oracle/oci"
      # A version seen pinned in public configurations; the registry could not be reached to check
      # for a newer one. Raise it deliberately and re-run plan.
      version = "= 8.23.0"
    }
  }
}

# Authentication comes from the environment (an OCI CLI profile, instance principal or
# Resource Manager); no key or fingerprint is written here.
provider "oci" {
  region = var.region
}
