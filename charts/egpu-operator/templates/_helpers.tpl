{{- define "egpu.name" -}}egpu-operator{{- end -}}
{{- define "egpu.fullname" -}}
{{- if contains "egpu-operator" .Release.Name -}}{{ .Release.Name | trunc 63 }}{{- else -}}{{ printf "%s-egpu-operator" .Release.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end -}}
{{- define "egpu.labels" -}}
app.kubernetes.io/name: {{ include "egpu.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}
{{- define "egpu.selectorLabels" -}}
app.kubernetes.io/name: {{ include "egpu.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
{{- define "egpu.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}{{ default (include "egpu.fullname" .) .Values.serviceAccount.name }}{{- else -}}{{ default "default" .Values.serviceAccount.name }}{{- end -}}
{{- end -}}
