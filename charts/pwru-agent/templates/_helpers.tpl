{{- define "pwru-agent.name" -}}
{{- .Chart.Name -}}
{{- end -}}

{{- define "pwru-agent.labels" -}}
app.kubernetes.io/name: {{ include "pwru-agent.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "pwru-agent.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pwru-agent.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The agent's configuration: what the chart must set, then .Values.config over it. */}}
{{- define "pwru-agent.config" -}}
{{- if eq .Values.traces.auth "none" -}}
{{- fail "traces.auth none is refused: the agent listens on every address; use kubernetes or token" -}}
{{- end -}}
{{- $traces := dict "auth" .Values.traces.auth -}}
{{- if eq .Values.traces.auth "token" -}}
{{- $_ := required "traces.tokenSecret names the Secret with the bearer token (key token)" .Values.traces.tokenSecret -}}
{{- $_ := set $traces "token_file" "/var/run/pwru-agent/token/token" -}}
{{- end -}}
{{- $peer := .Values.traces.peer -}}
{{- if $peer.enabled -}}
{{- if eq (int $peer.port) (int .Values.port) -}}
{{- fail (printf "traces.peer.port %v is the HTTP port too; the agents need a port of their own for each other" $peer.port) -}}
{{- end -}}
{{- $dir := "/var/run/pwru-agent/peer-tls" -}}
{{- $_ := set $traces "peer_port" (int $peer.port) -}}
{{- $_ := set $traces "peer_daemonset" (include "pwru-agent.name" .) -}}
{{- $_ := set $traces "peer_selector" (printf "app.kubernetes.io/name=%s,app.kubernetes.io/instance=%s" (include "pwru-agent.name" .) .Release.Name) -}}
{{- $_ := set $traces "peer_tls" (dict "ca_file" (printf "%s/ca.crt" $dir) "cert_file" (printf "%s/tls.crt" $dir) "key_file" (printf "%s/tls.key" $dir) "name" $peer.name) -}}
{{- else -}}
{{- $_ := set $traces "forward" false -}}
{{- end -}}
{{- $base := dict "http" (dict "listen" (printf "0.0.0.0:%v" .Values.port)) "traces" $traces "kubernetes" (dict "enabled" "on" "proc_root" "/host/proc") -}}
{{- toYaml (mustMergeOverwrite $base .Values.config) -}}
{{- end -}}


{{/* The Secret with the agents' CA, certificate and key (traces.peer). */}}
{{- define "pwru-agent.peerTlsSecret" -}}
{{- .Values.traces.peer.tlsSecret | default (printf "%s-peer-tls" (include "pwru-agent.name" .)) -}}
{{- end -}}
