{{- define "herald.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "herald.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "herald.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "herald.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "herald.selectorLabels" -}}
app.kubernetes.io/name: {{ include "herald.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "herald.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* Whether a stages list includes the API. */}}
{{- define "herald.servesAPI" -}}
{{- $s := splitList "," (. | replace " " "") -}}
{{- if or (has "all" $s) (has "api" $s) -}}true{{- else -}}false{{- end -}}
{{- end -}}

{{/* The grace period: preStop, then the drain, then the rest of the stop. */}}
{{- define "herald.terminationGrace" -}}
{{- add .Values.drain.preStopSleepSeconds .Values.drain.sendDrainTimeoutSeconds .Values.drain.marginSeconds -}}
{{- end -}}

{{/*
The container's environment, shared by the StatefulSet and the API-only
Deployment. Called with (dict "root" $ "stages" STAGES "memoryLimit" LIMIT).
Every name here must be a variable `herald run` reads (cmd/herald's
TestChartEnv).
*/}}
{{- define "herald.env" -}}
{{- $v := .root.Values -}}
- name: HERALD_BROKERS
  value: {{ required "brokers: Herald needs a Kafka cluster" $v.brokers | quote }}
- name: HERALD_PARTITIONS
  value: {{ $v.partitions | quote }}
- name: HERALD_REPLICATION
  value: {{ $v.replication | quote }}
- name: HERALD_STAGES
  value: {{ .stages | quote }}
- name: HERALD_DATA_DIR
  value: /data
- name: HERALD_HTTP_ADDR
  value: {{ printf "0.0.0.0:%d" (int $v.httpPort) | quote }}
- name: HERALD_SEND_DRAIN_TIMEOUT
  value: {{ printf "%ds" (int $v.drain.sendDrainTimeoutSeconds) | quote }}
{{- with .memoryLimit }}
- name: HERALD_MEMORY_LIMIT
  value: {{ . | quote }}
{{- end }}
{{- with $v.kafka.tls }}
{{- if .enabled }}
- name: HERALD_KAFKA_TLS
  value: "true"
{{- end }}
{{- if .existingSecret }}
{{- if .caKey }}
- name: HERALD_KAFKA_TLS_CA
  value: {{ printf "/etc/herald/kafka-tls/%s" .caKey | quote }}
{{- end }}
{{- if .certKey }}
- name: HERALD_KAFKA_TLS_CERT
  value: {{ printf "/etc/herald/kafka-tls/%s" .certKey | quote }}
- name: HERALD_KAFKA_TLS_KEY
  value: {{ printf "/etc/herald/kafka-tls/%s" .keyKey | quote }}
{{- end }}
{{- end }}
{{- with .serverName }}
- name: HERALD_KAFKA_TLS_SERVER_NAME
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- with $v.kafka.sasl.mechanism }}
- name: HERALD_KAFKA_SASL_MECHANISM
  value: {{ . | quote }}
- name: HERALD_KAFKA_SASL_USER
  value: {{ required "kafka.sasl.user: SASL needs a user" $v.kafka.sasl.user | quote }}
- name: HERALD_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $v.secrets.existingSecret | quote }}
      key: {{ $v.secrets.kafkaSaslPasswordKey | quote }}
{{- end }}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ required "secrets.existingSecret: the Secret holding DATABASE_URL and the API token" $v.secrets.existingSecret | quote }}
      key: {{ $v.secrets.databaseUrlKey | quote }}
- name: HERALD_API_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ $v.secrets.existingSecret | quote }}
      key: {{ $v.secrets.apiTokenKey | quote }}
{{- if $v.secrets.webhookSecret }}
- name: HERALD_WEBHOOK_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ $v.secrets.existingSecret | quote }}
      key: {{ $v.secrets.webhookSecretKey | quote }}
{{- end }}
{{- range $name, $value := $v.config }}
- name: {{ printf "HERALD_%s" ($name | upper | replace "-" "_") }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end -}}

{{/* Volume mounts shared by both workloads (the data volume apart). */}}
{{- define "herald.volumeMounts" -}}
- name: data
  mountPath: /data
- name: tmp
  mountPath: /tmp
{{- if .Values.kafka.tls.existingSecret }}
- name: kafka-tls
  mountPath: /etc/herald/kafka-tls
  readOnly: true
{{- end }}
{{- if .Values.database.tls.existingSecret }}
- name: pg-tls
  mountPath: /etc/herald/pg-tls
  readOnly: true
{{- end }}
{{- end -}}

{{- define "herald.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- if .Values.kafka.tls.existingSecret }}
- name: kafka-tls
  secret:
    secretName: {{ .Values.kafka.tls.existingSecret | quote }}
    defaultMode: 0440
{{- end }}
{{- if .Values.database.tls.existingSecret }}
- name: pg-tls
  secret:
    secretName: {{ .Values.database.tls.existingSecret | quote }}
    defaultMode: 0440
{{- end }}
{{- end -}}

{{/* The pod's security: Herald's image runs as nonroot (65532). fsGroup
makes a new volume writable by it. */}}
{{- define "herald.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "herald.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}

{{/* Probes and the drain, shared by both workloads. */}}
{{- define "herald.probes" -}}
startupProbe:
  # /healthz answers once the brokers were reached and the topics checked
  # (herald waits up to 30 s for the brokers).
  httpGet:
    path: /healthz
    port: http
  periodSeconds: 5
  failureThreshold: 24
livenessProbe:
  httpGet:
    path: /healthz
    port: http
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 3
readinessProbe:
  # /readyz: the processors run and the views have recovered the table.
  httpGet:
    path: /readyz
    port: http
  periodSeconds: 5
  timeoutSeconds: 5
  failureThreshold: 2
lifecycle:
  preStop:
    sleep:
      seconds: {{ .Values.drain.preStopSleepSeconds }}
{{- end -}}

{{- define "herald.affinity" -}}
{{- if .root.Values.affinity -}}
{{ toYaml .root.Values.affinity }}
{{- else -}}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "herald.selectorLabels" .root | nindent 12 }}
            app.kubernetes.io/component: {{ .component }}
{{- end -}}
{{- end -}}
