{{/*
Chart name, truncated to the 63 characters Kubernetes names allow.
*/}}
{{- define "daftra-bridge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: <release>-<chart> unless the release name already
contains the chart name, or fullnameOverride is set.
*/}}
{{- define "daftra-bridge.fullname" -}}
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

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "daftra-bridge.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels (must never change between upgrades).
*/}}
{{- define "daftra-bridge.selectorLabels" -}}
app.kubernetes.io/name: {{ include "daftra-bridge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Common labels.
*/}}
{{- define "daftra-bridge.labels" -}}
helm.sh/chart: {{ include "daftra-bridge.chart" . }}
{{ include "daftra-bridge.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Name of the Secret holding the secret variables.
*/}}
{{- define "daftra-bridge.secretName" -}}
{{- if .Values.existingSecret }}
{{- .Values.existingSecret }}
{{- else }}
{{- include "daftra-bridge.fullname" . }}
{{- end }}
{{- end }}

{{/*
Name of the PersistentVolumeClaim mounted at /data.
*/}}
{{- define "daftra-bridge.claimName" -}}
{{- if .Values.persistence.existingClaim }}
{{- .Values.persistence.existingClaim }}
{{- else }}
{{- include "daftra-bridge.fullname" . }}
{{- end }}
{{- end }}

{{/*
Variables that are secrets: injected from the Secret, never from `config`.
*/}}
{{- define "daftra-bridge.secretKeys" -}}
DAFTRA_API_KEY DAFTRA_CLIENT_SECRET DAFTRA_PASSWORD EXPORT_TOKEN AMQP_URL ADMIN_TOKEN INBOUND_WEBHOOK_TOKEN
{{- end }}

{{/*
Image reference.
*/}}
{{- define "daftra-bridge.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag | toString) }}
{{- end }}
