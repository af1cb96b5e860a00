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
{{- $base := dict "http" (dict "listen" (printf "0.0.0.0:%v" .Values.port)) "traces" $traces "kubernetes" (dict "enabled" "on" "proc_root" "/host/proc") -}}
{{- toYaml (mustMergeOverwrite $base .Values.config) -}}
{{- end -}}
