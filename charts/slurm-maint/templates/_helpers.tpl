{{/* Chart name. */}}
{{- define "slurm-maint.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: the release name if it contains the chart name. */}}
{{- define "slurm-maint.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "slurm-maint.controller.fullname" -}}
{{- printf "%s-controller" (include "slurm-maint.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "slurm-maint.agent.fullname" -}}
{{- printf "%s-agent" (include "slurm-maint.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Common labels. */}}
{{- define "slurm-maint.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "slurm-maint.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: slurm-maint
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "slurm-maint.selectorLabels" -}}
app.kubernetes.io/name: {{ include "slurm-maint.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "slurm-maint.controller.selectorLabels" -}}
{{ include "slurm-maint.selectorLabels" . }}
app.kubernetes.io/component: controller
{{- end }}

{{- define "slurm-maint.agent.selectorLabels" -}}
{{ include "slurm-maint.selectorLabels" . }}
app.kubernetes.io/component: agent
{{- end }}

{{- define "slurm-maint.controller.serviceAccountName" -}}
{{- if .Values.serviceAccount.controller.create }}
{{- default (include "slurm-maint.controller.fullname" .) .Values.serviceAccount.controller.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.controller.name }}
{{- end }}
{{- end }}

{{- define "slurm-maint.agent.serviceAccountName" -}}
{{- if .Values.serviceAccount.agent.create }}
{{- default (include "slurm-maint.agent.fullname" .) .Values.serviceAccount.agent.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.agent.name }}
{{- end }}
{{- end }}

{{- define "slurm-maint.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The agent image: tag <appVersion>-slurm<agent.slurmVersion> unless set. */}}
{{- define "slurm-maint.agent.image" -}}
{{- $tag := default (printf "%s-slurm%s" (default .Chart.AppVersion .Values.image.tag) .Values.agent.slurmVersion) .Values.agent.image.tag }}
{{- printf "%s:%s" .Values.agent.image.repository $tag }}
{{- end }}

{{/* The munged sidecar's image: the agent image unless set. */}}
{{- define "slurm-maint.munge.image" -}}
{{- $m := .Values.agent.slurm.munge.image }}
{{- if $m.repository }}
{{- ternary (printf "%s:%s" $m.repository $m.tag) $m.repository (ne $m.tag "") }}
{{- else }}
{{- include "slurm-maint.agent.image" . }}
{{- end }}
{{- end }}

{{/* Namespaces holding MaintenancePolicies (the release namespace by default). */}}
{{- define "slurm-maint.policyNamespaces" -}}
{{- if .Values.rbac.policyNamespaces }}
{{- toJson (uniq .Values.rbac.policyNamespaces) }}
{{- else }}
{{- toJson (list .Release.Namespace) }}
{{- end }}
{{- end }}

{{/* Cross-field checks the JSON schema cannot express. */}}
{{- define "slurm-maint.validate" -}}
{{- if and (gt (int .Values.controller.replicas) 1) (not .Values.controller.leaderElection.enabled) }}
{{- fail "controller.replicas > 1 needs controller.leaderElection.enabled=true: two controllers without a Lease would both act on Slurm" }}
{{- end }}
{{- if .Values.agent.enabled }}
{{- if and .Values.agent.slurm.configMap .Values.agent.slurm.hostPath }}
{{- fail "agent.slurm.configMap and agent.slurm.hostPath are alternatives: set one" }}
{{- end }}
{{- end }}
{{- end }}
