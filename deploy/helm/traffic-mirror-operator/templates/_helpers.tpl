{{/*
Chart name, overridable with nameOverride.
*/}}
{{- define "traffic-mirror-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name (63 characters at most: some name fields are DNS labels).
If the release name already contains the chart name it is used as is.
*/}}
{{- define "traffic-mirror-operator.fullname" -}}
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
{{- define "traffic-mirror-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every object.
*/}}
{{- define "traffic-mirror-operator.labels" -}}
helm.sh/chart: {{ include "traffic-mirror-operator.chart" . }}
{{ include "traffic-mirror-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: traffic-mirror-operator
{{- end }}

{{/*
Selector labels (immutable in a Deployment: never add to these).
*/}}
{{- define "traffic-mirror-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "traffic-mirror-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end }}

{{/*
Name of the ServiceAccount to use.
*/}}
{{- define "traffic-mirror-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "traffic-mirror-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Image reference: repository@digest when a digest is given, else repository:tag (tag defaults to
the chart's appVersion).
*/}}
{{- define "traffic-mirror-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
Value of --metrics-addr.
*/}}
{{- define "traffic-mirror-operator.metricsAddr" -}}
{{- printf "%s:%v" .Values.operator.metricsBindAddress .Values.operator.metricsPort }}
{{- end }}

{{/*
Value of --log-format: "json" or "text". The deprecated boolean operator.logJson, when set, wins
(values files written for older charts keep their meaning); anything else fails the render
rather than starting a pod that exits on a bad flag.
*/}}
{{- define "traffic-mirror-operator.logFormat" -}}
{{- $format := .Values.operator.logFormat }}
{{- if kindIs "bool" .Values.operator.logJson }}
{{- $format = ternary "json" "text" .Values.operator.logJson }}
{{- end }}
{{- if not (has $format (list "json" "text")) }}
{{- fail (printf "operator.logFormat must be \"json\" or \"text\", not %q" (toString $format)) }}
{{- end }}
{{- $format }}
{{- end }}

{{/*
The one namespace whose Secrets the operator reads (--credentials-namespace): credentialsNamespace,
else the release namespace.
*/}}
{{- define "traffic-mirror-operator.credentialsNamespace" -}}
{{- default .Release.Namespace .Values.credentialsNamespace }}
{{- end }}
