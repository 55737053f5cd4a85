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
The replica count (replicaCount, default 1) as a whole number of 0 or more; fails otherwise.
*/}}
{{- define "daftra-bridge.replicas" -}}
{{- $setting := .Values.replicaCount }}
{{- if kindIs "invalid" $setting }}
{{- $setting = 1 }}
{{- end }}
{{- if not (regexMatch "^[0-9]+$" (toString $setting)) }}
{{- fail (printf "replicaCount must be a whole number of 0 or more, not %q" (toString $setting)) }}
{{- end }}
{{- toString $setting | atoi }}
{{- end }}

{{/*
"true" when the store is PostgreSQL, empty for SQLite. PostgreSQL is chosen by setting
database.url (kept in the chart's Secret) or database.existingSecret (a Secret of your own, which
the chart cannot read: its key must hold a postgres:// or postgresql:// URL).
*/}}
{{- define "daftra-bridge.postgres" -}}
{{- $db := .Values.database | default dict }}
{{- if or $db.url $db.existingSecret }}true{{ end }}
{{- end }}

{{/*
Whether a database URL is a PostgreSQL one (postgres:// or postgresql://, any case).
*/}}
{{- define "daftra-bridge.isPostgresUrl" -}}
{{- $url := . | default "" | toString | trim | lower }}
{{- if or (hasPrefix "postgres://" $url) (hasPrefix "postgresql://" $url) }}true{{ end }}
{{- end }}

{{/*
Checks the store settings: a PostgreSQL URL (or any URL holding credentials) never sits in the
plain `config`, database.url is a PostgreSQL URL, it and database.existingSecret are not both
set, and more than one replica runs only on PostgreSQL. Renders nothing.
*/}}
{{- define "daftra-bridge.validateDatabase" -}}
{{- $db := .Values.database | default dict }}
{{- $plain := .Values.config.DATABASE_URL | default "" | toString | trim }}
{{- if include "daftra-bridge.isPostgresUrl" $plain }}
{{- fail "config.DATABASE_URL is a PostgreSQL URL, but `config` is rendered as plain environment variables and a PostgreSQL URL carries the database password: set database.url (stored in the chart's Secret) or database.existingSecret instead, and leave config.DATABASE_URL for SQLite" }}
{{- end }}
{{- if regexMatch "^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*@" $plain }}
{{- fail "config.DATABASE_URL holds credentials (user:password@) and would be rendered as a plain environment variable: put a PostgreSQL URL in database.url or database.existingSecret instead" }}
{{- end }}
{{- if and $db.url $db.existingSecret }}
{{- fail "set database.url or database.existingSecret, not both" }}
{{- end }}
{{- if and $db.url (not (include "daftra-bridge.isPostgresUrl" $db.url)) }}
{{- fail "database.url must be a postgres:// or postgresql:// URL (a SQLite URL goes in config.DATABASE_URL)" }}
{{- end }}
{{- if and $db.url .Values.existingSecret }}
{{- fail (printf "database.url is stored in the chart's Secret, which is not created when existingSecret is set: add DATABASE_URL to the Secret %s and set database.existingSecret=%s instead" .Values.existingSecret .Values.existingSecret) }}
{{- end }}
{{- $replicas := include "daftra-bridge.replicas" . | atoi }}
{{- if and (gt $replicas 1) (not (include "daftra-bridge.postgres" .)) }}
{{- fail (printf "replicaCount=%d needs PostgreSQL: with SQLite (config.DATABASE_URL) exactly one pod owns the database file, so replicaCount must be 0 or 1. Set database.url to a postgres:// or postgresql:// URL, or database.existingSecret to a Secret holding one, to run several replicas" $replicas) }}
{{- end }}
{{- end }}

{{/*
Name of the Secret and the key holding DATABASE_URL in PostgreSQL mode.
*/}}
{{- define "daftra-bridge.databaseSecretName" -}}
{{- if .Values.database.existingSecret }}
{{- .Values.database.existingSecret }}
{{- else }}
{{- include "daftra-bridge.fullname" . }}
{{- end }}
{{- end }}

{{- define "daftra-bridge.databaseSecretKey" -}}
{{- if .Values.database.existingSecret }}
{{- .Values.database.existingSecretKey | default "DATABASE_URL" }}
{{- else -}}
DATABASE_URL
{{- end }}
{{- end }}

{{/*
Variables that are secrets: injected from the Secret, never from `config`.
*/}}
{{- define "daftra-bridge.secretKeys" -}}
DAFTRA_API_KEY DAFTRA_CLIENT_SECRET DAFTRA_PASSWORD EXPORT_TOKEN LINK_SIGNING_KEY AMQP_URL ADMIN_TOKEN INBOUND_WEBHOOK_TOKEN BRIDGE_SECRETS_KEY BRIDGE_SECRETS_KEY_PREVIOUS
{{- end }}

{{/*
Image reference.
*/}}
{{- define "daftra-bridge.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag | toString) }}
{{- end }}
