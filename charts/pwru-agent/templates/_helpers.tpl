{{- define "pwru-agent.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
What every object of a release is called. Two releases must not share a
name: the ClusterRoles and the ClusterRoleBinding are cluster-wide, and a
second install would take them over (or fail on Helm's ownership check).
A release named like the chart ("pwru-agent", the README's install) keeps
the plain name. 63: names that become DNS labels (the Service).
*/}}
{{- define "pwru-agent.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "pwru-agent.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
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
{{- $_ := set $traces "peer_daemonset" (include "pwru-agent.fullname" .) -}}
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
{{- .Values.traces.peer.tlsSecret | default (printf "%s-peer-tls" (include "pwru-agent.fullname" .)) -}}
{{- end -}}

{{/*
Placement values that would break the chart's own parts, refused with what
to do instead: the API server would take most of them and the agent fail
later (a selector that no longer selects, a duplicate env or volume the
server rejects with the chart's name for it, a rollout stuck on host ports).
*/}}
{{- define "pwru-agent.checkPlacement" -}}
{{- range $key := list "app.kubernetes.io/name" "app.kubernetes.io/instance" -}}
{{- if hasKey ($.Values.podLabels | default dict) $key -}}
{{- fail (printf "podLabels.%s is the chart's selector label (the DaemonSet finds its pods by it); use another key" $key) -}}
{{- end -}}
{{- end -}}
{{- if hasKey (.Values.podAnnotations | default dict) "checksum/config" -}}
{{- fail "podAnnotations.checksum/config is the chart's (it rolls the agents when their configuration changes); use another key" -}}
{{- end -}}
{{- range $arg := .Values.extraArgs -}}
{{- if or (eq $arg "--config") (hasPrefix "--config=" $arg) -}}
{{- fail "extraArgs: --config is the chart's (its ConfigMap); put configuration keys under config: instead" -}}
{{- end -}}
{{- end -}}
{{- range $env := .Values.extraEnv -}}
{{- if has $env.name (list "NODE_NAME" "POD_NAMESPACE") -}}
{{- fail (printf "extraEnv: %s is set by the chart from the downward API (the agent needs the real one); use another name" $env.name) -}}
{{- end -}}
{{- end -}}
{{- $volumes := list "config" "token" "peer-tls" "btf" "tracing" "debugfs" "cgroup" "bpffs" "host-proc" "run-state" -}}
{{- range $v := .Values.extraVolumes -}}
{{- if has $v.name $volumes -}}
{{- fail (printf "extraVolumes: the volume name %s is the chart's (its volumes: %s); use another name" $v.name (join ", " $volumes)) -}}
{{- end -}}
{{- end -}}
{{- $paths := list "/etc/pwru-agent" "/var/run/pwru-agent/token" "/var/run/pwru-agent/peer-tls" "/sys/kernel/btf" "/sys/kernel/tracing" "/sys/kernel/debug" "/sys/fs/cgroup" "/sys/fs/bpf" "/host/proc" "/run/pwru" -}}
{{- range $m := .Values.extraVolumeMounts -}}
{{- if has (trimSuffix "/" $m.mountPath) $paths -}}
{{- fail (printf "extraVolumeMounts: %s is where the chart mounts one of its own volumes (%s); mount elsewhere" $m.mountPath (join ", " $paths)) -}}
{{- end -}}
{{- end -}}
{{- $rolling := .Values.updateStrategy.rollingUpdate | default dict -}}
{{- if and (eq .Values.updateStrategy.type "RollingUpdate") (hasKey $rolling "maxSurge") -}}
{{- if not (has (toString $rolling.maxSurge) (list "0" "0%")) -}}
{{- fail (printf "updateStrategy.rollingUpdate.maxSurge %v: the agent listens on host ports, so a second agent cannot start on a node while the first runs and the rollout would stall; leave maxSurge 0 and raise maxUnavailable" $rolling.maxSurge) -}}
{{- end -}}
{{- end -}}
{{- end -}}
