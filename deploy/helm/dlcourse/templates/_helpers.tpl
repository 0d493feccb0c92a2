{{/* Names and labels shared by every object of the chart. */}}

{{- define "dlcourse.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "dlcourse.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "dlcourse.labels" -}}
{{ include "dlcourse.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "dlcourse.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "dlcourse.podNamespace" -}}
{{ .Values.kubernetes.podNamespace | default .Release.Namespace }}
{{- end -}}

{{- define "dlcourse.metricsTokenSecret" -}}
{{ .Values.metricsToken.existingSecret | default (printf "%s-metrics-token" (include "dlcourse.fullname" .)) }}
{{- end -}}

{{/*
A generated file (files/, deploy/helm/generate.py) with its `${job.<role>}` placeholders
replaced by .Values.jobs. Called with (list $ "files/...").
*/}}
{{- define "dlcourse.withJobs" -}}
{{- $root := index . 0 -}}
{{- $path := index . 1 -}}
{{- $text := $root.Files.Get $path -}}
{{- if not $text -}}
{{- fail (printf "chart file %s is missing: run `make helm-files`" $path) -}}
{{- end -}}
{{- range $role, $job := $root.Values.jobs -}}
{{- $text = replace (printf "${job.%s}" $role) $job $text -}}
{{- end -}}
{{- if contains "${job." $text -}}
{{- fail (printf "%s names a job role that .Values.jobs lacks" $path) -}}
{{- end -}}
{{- $text -}}
{{- end -}}

{{/* Container settings both exporters share: a read-only root, no capabilities. */}}
{{- define "dlcourse.containerSecurityContext" -}}
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
capabilities:
  drop: [ALL]
{{- end -}}
