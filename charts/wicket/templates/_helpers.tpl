{{/* Chart name, overridable. */}}
{{- define "wicket.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart unless the release name already contains the chart name. */}}
{{- define "wicket.fullname" -}}
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

{{- define "wicket.selectorLabels" -}}
app.kubernetes.io/name: {{ include "wicket.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "wicket.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "wicket.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: controller
{{- end }}

{{- define "wicket.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "wicket.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Seconds of a "Ns" duration. */}}
{{- define "wicket.seconds" -}}
{{- trimSuffix "s" . | int }}
{{- end }}

{{/* Namespaces that get namespaced Roles when watchNamespaces is set: those, plus the
release namespace (the published Service lives there). */}}
{{- define "wicket.roleNamespaces" -}}
{{- $all := concat .Values.controller.watchNamespaces (list .Release.Namespace) | uniq -}}
{{- join "," $all -}}
{{- end }}
