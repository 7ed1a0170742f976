{{- define "beacon.fullname" -}}
{{- printf "%s-beacon" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "beacon.labels" -}}
app.kubernetes.io/name: beacon
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "beacon.selector" -}}
app.kubernetes.io/name: beacon
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "beacon.secretName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-secrets" (include "beacon.fullname" .)) -}}
{{- end -}}

{{- define "beacon.image" -}}
image: {{ printf "%s:%s" .Values.image.repository .Values.image.tag | quote }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
{{- end -}}

{{/* Settings every beacon process reads; secrets as files (deploy/docker-entrypoint.sh
turns BEACON_<NAME>_FILE into BEACON_<NAME> before the command starts). */}}
{{- define "beacon.env" -}}
- name: BEACON_KAFKA
  value: {{ .Values.kafka.bootstrap | quote }}
- name: BEACON_CLICKHOUSE_FILE
  value: /run/secrets/beacon/clickhouse-dsn
- name: BEACON_RETENTION_DAYS
  value: {{ .Values.retentionDays | quote }}
- name: BEACON_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
{{- end -}}

{{- define "beacon.secretMount" -}}
- name: secrets
  mountPath: /run/secrets/beacon
  readOnly: true
{{- end -}}

{{- define "beacon.secretVolume" -}}
- name: secrets
  secret:
    secretName: {{ include "beacon.secretName" . }}
    # Read by the entrypoint as uid 10001: the files belong to root and to the pod's
    # fsGroup (10001), so group read is what lets it in.
    defaultMode: 0440
{{- end -}}

{{- define "beacon.probes" -}}
livenessProbe:
  httpGet: {path: /healthz, port: {{ .port }}}
  periodSeconds: 10
  failureThreshold: 6
readinessProbe:
  httpGet: {path: /readyz, port: {{ .port }}}
  periodSeconds: 5
  failureThreshold: 3
{{- end -}}


{{/* What every beacon pod has in common: no Kubernetes API token (no process calls
the API), and a restart when the chart-made Secret changes, since the entrypoint
reads the secret files once, at start. */}}
{{- define "beacon.podAnnotations" -}}
{{- if not .Values.secrets.existingSecret }}
annotations:
  checksum/secret: {{ include (print .Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end }}
{{- end -}}

{{- define "beacon.podSpec" -}}
automountServiceAccountToken: false
securityContext: {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations: {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
