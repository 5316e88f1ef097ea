{{/*
Helpers. Keep to what crates/tollway-deploy's renderer supports (see the
chart's README): field chains, if/else/range/with/define, include, and the
functions listed there.
*/}}

{{- define "tollway.labels" -}}
app.kubernetes.io/part-of: tollway
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tollway.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* "true" or "false"; anything else is refused. */}}
{{- define "tollway.kubeProxyReplacement" -}}
{{- $kpr := toString .Values.kubeProxyReplacement -}}
{{- if eq $kpr "true" -}}
true
{{- else if or (eq $kpr "false") (eq $kpr "<nil>") (eq $kpr "") -}}
false
{{- else -}}
{{- fail (printf "kubeProxyReplacement must be true or false, not %q (Cilium's old strict/partial modes are gone: true replaces kube-proxy completely)" $kpr) -}}
{{- end -}}
{{- end }}

{{/* flows.* with Hubble's names as aliases: a hubble.* value that is set wins. */}}
{{- define "tollway.flows.enabled" -}}
{{- if kindIs "bool" .Values.hubble.enabled -}}{{ .Values.hubble.enabled }}{{- else -}}{{ .Values.flows.enabled }}{{- end -}}
{{- end }}

{{- define "tollway.flows.relay.enabled" -}}
{{- if kindIs "bool" .Values.hubble.relay.enabled -}}{{ .Values.hubble.relay.enabled }}{{- else -}}{{ .Values.flows.relay.enabled }}{{- end -}}
{{- end }}

{{- define "tollway.flows.ui.enabled" -}}
{{- if kindIs "bool" .Values.hubble.ui.enabled -}}{{ .Values.hubble.ui.enabled }}{{- else -}}{{ .Values.flows.ui.enabled }}{{- end -}}
{{- end }}

{{/* Refuse settings the agent would refuse, at install time. */}}
{{- define "tollway.validate" -}}
{{- $kpr := include "tollway.kubeProxyReplacement" . -}}
{{- if and (eq $kpr "true") (not .Values.k8sServiceHost) -}}
{{- fail "kubeProxyReplacement=true needs k8sServiceHost (and k8sServicePort): the agent replaces kube-proxy, so it cannot reach the API server through the kubernetes Service's ClusterIP" -}}
{{- end -}}
{{- if not (has (toString .Values.loadBalancer.algorithm) (list "random" "maglev")) -}}
{{- fail (printf "loadBalancer.algorithm must be random or maglev, not %q" (toString .Values.loadBalancer.algorithm)) -}}
{{- end -}}
{{- if not (has (toString .Values.maglev.tableSize) (list "251" "509" "1021" "2039" "4093" "8191" "16381" "32749" "65521" "131071")) -}}
{{- fail (printf "maglev.tableSize must be one of 251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071, not %s" (toString .Values.maglev.tableSize)) -}}
{{- end -}}
{{- if not (has (toString .Values.bpf.monitorAggregation) (list "none" "low" "medium" "maximum")) -}}
{{- fail (printf "bpf.monitorAggregation must be none, low, medium or maximum, not %q" (toString .Values.bpf.monitorAggregation)) -}}
{{- end -}}
{{- if ne (toString .Values.routingMode) "native" -}}
{{- fail (printf "routingMode %q is not supported yet (only native)" (toString .Values.routingMode)) -}}
{{- end -}}
{{- $flows := include "tollway.flows.enabled" . -}}
{{- $relay := include "tollway.flows.relay.enabled" . -}}
{{- $ui := include "tollway.flows.ui.enabled" . -}}
{{- if and (eq $relay "true") (ne $flows "true") -}}
{{- fail "flows.relay.enabled (hubble.relay.enabled) needs flows.enabled (hubble.enabled)" -}}
{{- end -}}
{{- if and (eq $ui "true") (ne $relay "true") -}}
{{- fail "flows.ui.enabled (hubble.ui.enabled) needs flows.relay.enabled (hubble.relay.enabled): the UI reads the relay" -}}
{{- end -}}
{{- end }}

{{/* The restricted security context of the relay and the UI. */}}
{{- define "tollway.restrictedSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}
