{{/* Names and labels shared by every template. */}}
{{- define "ztmint.fullname" -}}
{{- printf "%s-ztmint" .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object. app.kubernetes.io/instance comes with ztmint.selector on workloads. */}}
{{- define "ztmint.labels" -}}
app.kubernetes.io/name: ztmint
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: ztmint.selector (dict "root" $ "component" "mint"). */}}
{{- define "ztmint.selector" -}}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "ztmint.image" -}}
{{- if .digest -}}{{ .repository }}@{{ .digest }}{{- else -}}{{ .repository }}:{{ .tag }}{{- end -}}
{{- end -}}

{{/* Pod-level security context: non-root, RuntimeDefault seccomp. */}}
{{- define "ztmint.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Container security context: read-only root, no privilege escalation, every capability dropped. */}}
{{- define "ztmint.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* SPIFFE ID of a workload: ztmint.spiffe (dict "root" $ "name" "mint"). */}}
{{- define "ztmint.spiffe" -}}
spiffe://{{ .root.Values.trustDomain }}/{{ .name }}
{{- end -}}

{{/* Ray TLS between every Ray process and client (Ray's RAY_USE_TLS settings). The files are the
     cert-manager Secret of the pod's identity, mounted at /etc/ray/tls. */}}
{{- define "ztmint.rayTlsEnv" -}}
- { name: RAY_USE_TLS, value: "1" }
- { name: RAY_TLS_SERVER_CERT, value: /etc/ray/tls/tls.crt }
- { name: RAY_TLS_SERVER_KEY, value: /etc/ray/tls/tls.key }
- { name: RAY_TLS_CA_CERT, value: /etc/ray/tls/ca.crt }
{{- end -}}
