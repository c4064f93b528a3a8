#!/usr/bin/env bash
# Joins a self-managed confidential node to the OKE cluster: the OKE image's init script reads
# apiserver_host, cluster_ca_cert and oke-initial-node-labels from the instance metadata.
set -euo pipefail
curl --fail -H "Authorization: Bearer Oracle" -L0 \
  http://169.254.169.254/opc/v2/instance/metadata/oke_init_script | base64 --decode >/var/run/oke-init.sh
# The taint keeps every pod without the matching toleration (the Ray signer workers have it) off.
bash /var/run/oke-init.sh --kubelet-extra-args "--register-with-taints=ztmint.io/node-group=confidential:NoSchedule"
