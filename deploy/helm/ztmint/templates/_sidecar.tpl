{{/*
The ext_authz sidecar pattern: Envoy on :15443 (mTLS) -> the ztmint authz service on
127.0.0.1:9191 -> OPA on 127.0.0.1:8181, all in the pod of the protected application.

Envoy, authz and OPA talk over the pod's loopback interface, which NetworkPolicies do not
filter, so no policy is needed for those hops; only 15443 is opened to other pods.

Usage, in a pod spec:
  containers:
    {{- include "ztmint.sidecar.containers" (dict "root" $ "audience" "orders" "envoyConfig" "sidecar") | nindent 4 }}
  volumes:
    {{- include "ztmint.sidecar.volumes" (dict "root" $ "certificateSecret" "NAME-tls" "authzSecret" "NAME-authz-tls" "envoyConfig" "sidecar") | nindent 4 }}
"mintPolicy" true also loads the mint policy (opa/mint) into OPA; only the mint pod sets it.
*/}}
{{- define "ztmint.sidecar.containers" -}}
{{- $root := .root -}}
- name: envoy
  image: {{ include "ztmint.image" $root.Values.envoyImage }}
  args: ["-c", "/etc/envoy/envoy.yaml", "--log-level", "info"]
  ports:
    - name: mtls
      containerPort: 15443
      protocol: TCP
  securityContext:
    {{- include "ztmint.containerSecurityContext" $root | nindent 4 }}
  resources:
    {{- toYaml $root.Values.envoy.resources | nindent 4 }}
  readinessProbe:
    tcpSocket: { port: mtls }
    periodSeconds: 5
  volumeMounts:
    - { name: envoy-config, mountPath: /etc/envoy/envoy.yaml, subPath: envoy.yaml, readOnly: true }
    - { name: envoy-sds, mountPath: /etc/envoy/sds, readOnly: true }
    - { name: workload-tls, mountPath: /etc/ztmint/tls, readOnly: true }
- name: authz
  image: {{ include "ztmint.image" $root.Values.image }}
  # gRPC over mTLS (authz/tls.py): the authz certificate carries the SAN
  # spiffe://ztmint.internal/authz that envoy/*.yaml expects, and Envoy's client certificate
  # must chain to the mesh CA (ca.crt). The server reloads the files when cert-manager renews them.
  command:
    - python
    - -m
    - authz.server
    - --grpc-listen=127.0.0.1:9191
    - --metrics-listen=0.0.0.0:{{ $root.Values.authz.metricsPort }}
    - --opa-url=http://127.0.0.1:{{ $root.Values.opa.port }}
    - --opa-timeout={{ $root.Values.authz.opaTimeoutSeconds }}
    - --jwks-file=/etc/ztmint/jwks/jwks.json
    - --audience={{ .audience }}
    - --issuer={{ $root.Values.mint.publicUrl }}
    - --leeway={{ $root.Values.authz.leewaySeconds }}
    - --tls-cert=/etc/ztmint/authz-tls/tls.crt
    - --tls-key=/etc/ztmint/authz-tls/tls.key
    - --tls-client-ca=/etc/ztmint/authz-tls/ca.crt
  ports:
    - name: authz-metrics
      containerPort: {{ $root.Values.authz.metricsPort }}
      protocol: TCP
  securityContext:
    {{- include "ztmint.containerSecurityContext" $root | nindent 4 }}
  resources:
    {{- toYaml $root.Values.authz.resources | nindent 4 }}
  volumeMounts:
    - { name: jwks, mountPath: /etc/ztmint/jwks, readOnly: true }
    - { name: authz-tls, mountPath: /etc/ztmint/authz-tls, readOnly: true }
- name: opa
  image: {{ include "ztmint.image" $root.Values.opaImage }}
  args:
    - run
    - --server
    - --addr=127.0.0.1:{{ $root.Values.opa.port }}
    - --skip-version-check
    # A ConfigMap volume holds ..data symlinks next to the files; load the files only once.
    - --ignore=..*
    # Each package's data.json under its own prefix, as mint/stack.py loads them, because
    # both have a "scopes" table.
    - authz:/policy/authz
    {{- if .mintPolicy }}
    - mint:/policy/mint
    {{- end }}
  securityContext:
    {{- include "ztmint.containerSecurityContext" $root | nindent 4 }}
  resources:
    {{- toYaml $root.Values.opa.resources | nindent 4 }}
  volumeMounts:
    - { name: opa-policy, mountPath: /policy/authz, readOnly: true }
    {{- if .mintPolicy }}
    - { name: opa-mint-policy, mountPath: /policy/mint, readOnly: true }
    {{- end }}
{{- end -}}

{{- define "ztmint.sidecar.volumes" -}}
{{- $root := .root -}}
{{- $name := include "ztmint.fullname" $root -}}
- name: envoy-config
  configMap:
    name: {{ $name }}-envoy-{{ .envoyConfig }}
- name: envoy-sds
  configMap:
    name: {{ $name }}-envoy-sds
- name: workload-tls
  secret:
    secretName: {{ .certificateSecret }}
    defaultMode: 0440
- name: authz-tls
  secret:
    secretName: {{ .authzSecret }}
    defaultMode: 0440
- name: jwks
  configMap:
    name: {{ $name }}-jwks
- name: opa-policy
  configMap:
    name: {{ $name }}-opa-policy
{{- if .mintPolicy }}
- name: opa-mint-policy
  configMap:
    name: {{ $name }}-opa-mint-policy
{{- end }}
{{- end -}}
