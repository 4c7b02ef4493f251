{{/* Names and labels shared by every template. */}}

{{- define "iqs.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "iqs.fullname" -}}
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

{{- define "iqs.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "iqs.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "iqs.selectorLabels" -}}
app.kubernetes.io/name: {{ include "iqs.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "iqs.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "iqs.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "iqs.secretName" -}}
{{- default (printf "%s-connection" (include "iqs.fullname" .)) .Values.connection.existingSecret }}
{{- end }}

{{- define "iqs.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The gRPC services each deployable service serves, as a JSON list (read it with
fromJsonArray): the one place these names are written. The first is the one its pods
name in grpc.health.v1 (probes, NOTES); the Ingress routes each of them. */}}
{{- define "iqs.grpcServices" -}}
{{- $names := dict
  "rubric" (list "iqs.rubric.v1.RubricService")
  "evaluation" (list
    "iqs.evaluation.v1.EvaluationService"
    "iqs.evaluation.v1.CalibrationService"
    "iqs.evaluation.v1.DisputeService"
    "iqs.evaluation.v1.CoachingService"
    "iqs.evaluation.v1.AssignmentService"
    "iqs.integration.v1.WebhookService")
  "analytics" (list "iqs.analytics.v1.AnalyticsService") }}
{{- get $names . | toJson }}
{{- end }}

{{/* The gRPC service name each deployment reports in grpc.health.v1. */}}
{{- define "iqs.grpcService" -}}
{{- include "iqs.grpcServices" . | fromJsonArray | first }}
{{- end }}

{{- define "iqs.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "iqs.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
{{- end }}

{{/* Environment every IQS container gets. */}}
{{- define "iqs.env" -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "iqs.secretName" . }}
      key: {{ .Values.connection.databaseUrlKey }}
- name: IQS_AUTH
  value: {{ .Values.auth.mode | quote }}
- name: IQS_LOG_FORMAT
  value: {{ .Values.observability.logFormat | quote }}
- name: RUST_LOG
  value: {{ .Values.observability.logLevel | quote }}
{{- with .Values.observability.otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- with .Values.cors.allowedOrigins }}
- name: IQS_CORS_ALLOWED_ORIGINS
  value: {{ printf "[%s]" (join ", " .) | quote }}
{{- end }}
{{- end }}
