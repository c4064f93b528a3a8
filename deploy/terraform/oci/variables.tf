variable "region" {
  description = "OCI region identifier, for example us-ashburn-1."
  type        = string
}

variable "tenancy_ocid" {
  description = "OCID of the tenancy; used to list availability domains and to write IAM policies."
  type        = string
}

variable "compartment_ocid" {
  description = "OCID of the compartment that holds every ztmint resource."
  type        = string
}

variable "name_prefix" {
  description = "Prefix of every display name, so several ztmint installations can share a compartment."
  type        = string
  default     = "ztmint"
}

variable "kubernetes_version" {
  description = "Kubernetes version of the OKE cluster and its nodes, for example v1.34.1."
  type        = string
}

variable "vcn_cidr" {
  description = "CIDR block of the VCN."
  type        = string
  default     = "10.0.0.0/16"
}

variable "general_node_shape" {
  description = "Shape of the managed node pool that runs the mint API and the Ray head."
  type        = string
  default     = "VM.Standard.E5.Flex"
}

variable "general_node_count" {
  description = "Number of nodes in the general managed node pool, spread over the availability domains."
  type        = number
  default     = 3
}

variable "confidential_node_shape" {
  description = "AMD shape of the confidential (SEV-SNP) signer nodes; must support memory encryption, for example VM.Standard.E4.Flex."
  type        = string
  default     = "VM.Standard.E4.Flex"
}

variable "confidential_nodes_per_ad" {
  description = "Number of confidential signer nodes in each availability domain, placed across its fault domains."
  type        = number
  default     = 3
}

variable "node_ocpus" {
  description = "OCPUs of each node (Flex shapes)."
  type        = number
  default     = 2
}

variable "node_memory_gbs" {
  description = "Memory of each node in GB (Flex shapes)."
  type        = number
  default     = 16
}

variable "node_image_ocid" {
  description = "OCID of the OKE worker node image (Oracle Linux, matching kubernetes_version) for both pools."
  type        = string
}

variable "cluster_ca_cert" {
  description = "Base64 cluster CA certificate that self-managed nodes use to join (from the kubeconfig after the first apply). Public."
  type        = string
  default     = ""
}

variable "audit_retention_days" {
  description = "Days an audit log object is kept unchangeable by the bucket's retention rule."
  type        = number
  default     = 400
}

variable "log_retention_days" {
  description = "Days the OCI Logging log keeps entries (30, 60, 90, 120, 150 or 180)."
  type        = number
  default     = 180
}

variable "kubernetes_namespace" {
  description = "Kubernetes namespace of the Helm release; IAM policies grant OCI access to its mint ServiceAccount."
  type        = string
  default     = "ztmint"
}

variable "mint_service_account" {
  description = "Name of the mint's Kubernetes ServiceAccount (the Helm chart's RELEASE-ztmint-mint)."
  type        = string
  default     = "ztmint-ztmint-mint"
}
