{{/* The release's base name: the release name, prefixed with the chart's when it lacks it. */}}
{{- define "attune.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 54 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 54 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Name of the operator's Deployment, Service, ServiceAccount, ConfigMap and roles. */}}
{{- define "attune.operator" -}}
{{- printf "%s-operator" (include "attune.fullname" .) -}}
{{- end -}}

{{/* Labels every object of the release carries (the uninstall test finds them by instance). */}}
{{- define "attune.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
{{- end -}}

{{/* Labels that select the operator pods (stable across upgrades). */}}
{{- define "attune.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "attune.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "attune.operator" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name: set the existing ServiceAccount to use when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "attune.instance" -}}
{{- default .Release.Name .Values.instance -}}
{{- end -}}

{{- define "attune.leaseName" -}}
{{- default (include "attune.operator" .) .Values.leaderElection.leaseName -}}
{{- end -}}

{{/* The port of a "host:port" listen address. */}}
{{- define "attune.port" -}}
{{- splitList ":" . | last -}}
{{- end -}}

{{- define "attune.progressUrl" -}}
{{- if .Values.progress.url -}}
{{- .Values.progress.url -}}
{{- else -}}
{{- printf "http://%s.%s.svc:%v" (include "attune.operator" .) .Release.Namespace .Values.service.progressPort -}}
{{- end -}}
{{- end -}}
