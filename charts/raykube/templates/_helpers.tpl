{{/* Names, labels and the operator's arguments. */}}

{{- define "raykube.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "raykube.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "raykube.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "raykube.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "raykube.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "raykube.selectorLabels" -}}
app.kubernetes.io/name: {{ include "raykube.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "raykube.labels" -}}
helm.sh/chart: {{ include "raykube.chart" . }}
{{ include "raykube.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "raykube.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "raykube.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The ClusterRole of Ray's autoscaler sidecar. The operator binds it (RoleBinding,
bind on this name only) in the namespace of each autoscaling RayCluster.
*/}}
{{- define "raykube.autoscalerClusterRole" -}}
{{- printf "%s-ray-autoscaler" (include "raykube.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "raykube.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion (toString .Values.image.tag)) }}
{{- end }}

{{/*
"true" when leader election is on: explicitly, or "auto" with more than one
replica. Two replicas without it would both reconcile: refused.
*/}}
{{- define "raykube.leaderElection" -}}
{{- $mode := .Values.leaderElection.enabled }}
{{- $on := or (eq (toString $mode) "true") (and (eq (toString $mode) "auto") (gt (int .Values.replicaCount) 1)) }}
{{- if and (not $on) (gt (int .Values.replicaCount) 1) }}
{{- fail "replicaCount > 1 needs leader election: set leaderElection.enabled to true or auto" }}
{{- end }}
{{- ternary "true" "false" $on }}
{{- end }}

{{/* The operator's flags (see docs/operator.md); everything else keeps its default. */}}
{{- define "raykube.args" -}}
- --log-format={{ .Values.logFormat }}
- --log-level={{ .Values.logLevel }}
- --metrics-port={{ .Values.metrics.port }}
- --health-port={{ .Values.health.port }}
- --dashboard-access={{ .Values.dashboardAccess }}
- --cluster-domain={{ .Values.clusterDomain }}
- --autoscaler-cluster-role={{ include "raykube.autoscalerClusterRole" . }}
- --workers={{ .Values.workers }}
- --resync-seconds={{ .Values.resyncSeconds }}
{{- range .Values.watchNamespaces }}
- --namespace={{ . }}
{{- end }}
{{- if .Values.features.dashboardUrlAnnotations }}
- --dashboard-url-annotations
{{- end }}
{{- if eq (include "raykube.leaderElection" .) "true" }}
- --leader-election
- --lease-name={{ .Values.leaderElection.leaseName }}
- --lease-duration={{ .Values.leaderElection.leaseDuration }}
- --lease-renew-period={{ .Values.leaderElection.renewPeriod }}
- --lease-renew-deadline={{ .Values.leaderElection.renewDeadline }}
- --lease-retry-period={{ .Values.leaderElection.retryPeriod }}
{{- else }}
- --no-leader-election
{{- end }}
{{- with .Values.extraArgs }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The rules bound wherever the operator watches (ClusterRole or per-namespace Role). */}}
{{- define "raykube.watchedRules" -}}
{{ include "raykube.rules.operator" . }}
{{ include "raykube.rules.autoscalerBind" . }}
{{- if .Values.features.rayServiceAuthSecrets }}
{{ include "raykube.rules.authSecrets" . }}
{{- end }}
{{- if eq .Values.dashboardAccess "apiserver-proxy" }}
{{ include "raykube.rules.dashboardProxy" . }}
{{- end }}
{{- end }}
