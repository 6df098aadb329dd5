{{/* Names, labels and image references shared by every template. */}}

{{- define "medai.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "medai.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "medai.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "medai.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels; call with (dict "ctx" $ "component" "server"). */}}
{{- define "medai.selectorLabels" -}}
app.kubernetes.io/name: {{ include "medai.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "medai.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "medai.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* image reference: repository[:tag][@digest]; call with (dict "image" .Values.image "tag" "x"). */}}
{{- define "medai.imageRef" -}}
{{- $ref := printf "%s:%s" .image.repository .tag -}}
{{- if .image.digest -}}
{{- $ref = printf "%s@%s" $ref .image.digest -}}
{{- end -}}
{{- $ref -}}
{{- end -}}

{{/* The restricted Pod Security Standard, for every container. */}}
{{- define "medai.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
privileged: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "medai.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* MEDAI_* environment shared by the server and the migration Job. */}}
{{- define "medai.env" -}}
- name: MEDAI_LISTEN
  value: "0.0.0.0:8080"
- name: MEDAI_METRICS_LISTEN
  value: "0.0.0.0:9464"
- name: MEDAI_DATA_DIR
  value: /var/lib/medai
- name: MEDAI_PUBLIC_URL
  value: {{ .Values.config.publicUrl | quote }}
- name: MEDAI_LOG_FORMAT
  value: {{ .Values.config.logFormat | quote }}
- name: MEDAI_LOG
  value: {{ .Values.config.logLevel | quote }}
{{- with .Values.config.trustedProxies }}
- name: MEDAI_TRUSTED_PROXIES
  value: {{ toJson . | quote }}
{{- end }}
- name: MEDAI_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.secrets.existingSecret }}
      key: {{ .Values.secrets.databaseUrlKey }}
{{- if .Values.secrets.redisUrlKey }}
- name: MEDAI_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.secrets.existingSecret }}
      key: {{ .Values.secrets.redisUrlKey }}
{{- end }}
{{- if .Values.secrets.redisCaKey }}
- name: MEDAI_REDIS_CA_FILE
  value: /run/medai-redis-ca/ca.pem
{{- end }}
{{- range $k, $v := .Values.config.extraEnv }}
- name: {{ $k }}
  value: {{ $v | quote }}
{{- end }}
{{- end -}}

{{/* checkov suppressions, each with its reason; call with (dict "digest" <digest> "envSecrets" <bool>). */}}
{{- define "medai.checkovSkips" -}}
{{- if .envSecrets }}
checkov.io/skip1: CKV_K8S_35=medai reads database_url and redis_url only from MEDAI_* variables or medai.toml; it never logs them (config check masks them) and the key file is mounted as a file
{{- end }}
{{- if not .digest }}
checkov.io/skip2: CKV_K8S_43=this render has no image digest; production installs pass image.digest from the release workflow output (docs/deploy.md), and the chart then renders repository:tag@digest
{{- end }}
{{- end -}}
