{{/* Names, labels and image references shared by the templates. */}}

{{- define "loraland.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's full name: "<release>-loraland", or the release name when it already says loraland. */}}
{{- define "loraland.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "loraland.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "loraland.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: loraland
{{- end -}}

{{- define "loraland.selectorLabels" -}}
app.kubernetes.io/name: {{ include "loraland.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "loraland.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "loraland.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* An image reference: (dict "image" .Values.images.X "root" $ "suffix" "") */}}
{{- define "loraland.image" -}}
{{- $tag := default .root.Chart.AppVersion .image.tag -}}
{{- printf "%s:%s%s" .image.repository $tag (default "" .suffix) -}}
{{- end -}}

{{/* The ValidatingWebhookConfiguration the operator keeps current (its webhooks are named
"<handler>.<this>"; Kubernetes wants at least three dot-separated parts, and the name is
cluster-wide, so it carries the namespace). */}}
{{- define "loraland.webhookConfiguration" -}}
{{- printf "%s.%s.loraland.dev" (include "loraland.fullname" .) .Release.Namespace -}}
{{- end -}}

{{- define "loraland.webhookSecret" -}}
{{- printf "%s-webhook-tls" (include "loraland.fullname" .) -}}
{{- end -}}

{{- define "loraland.webhookService" -}}
{{- printf "%s-webhook" (include "loraland.fullname" .) -}}
{{- end -}}
