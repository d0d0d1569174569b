{{/* Names, labels and the image, shared by every template. */}}

{{- define "weft.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "weft.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: weftd, controller, cleanup. */}}
{{- define "weft.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "weft.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "weft.weftdServiceAccount" -}}{{ include "weft.fullname" . }}-weftd{{- end -}}
{{- define "weft.controllerServiceAccount" -}}{{ include "weft.fullname" . }}-controller{{- end -}}

{{/* The apiserver address, when the values override the in-cluster Service. */}}
{{- define "weft.apiServerEnv" -}}
{{- if .Values.apiServer.host -}}
- name: KUBERNETES_SERVICE_HOST
  value: {{ .Values.apiServer.host | quote }}
- name: KUBERNETES_SERVICE_PORT
  value: {{ .Values.apiServer.port | quote }}
{{- end }}
{{- end -}}

{{/* Prometheus' conventional scrape annotations. */}}
{{- define "weft.scrapeAnnotations" -}}
{{- if .root.Values.prometheus.annotations -}}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end -}}

{{/*
Every container runs with no capability it does not name, no way to gain one, and a
read-only image: what it writes is on the node (hostPath) or nowhere.
*/}}
{{- define "weft.restricted" -}}
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
seccompProfile:
  type: RuntimeDefault
capabilities:
  drop: [ALL]
{{- with .add }}
  add: {{ toJson . }}
{{- end }}
{{- end -}}

{{/* The policy relay's Service, its DNS name (on its certificate), and its Secret. */}}
{{- define "weft.relayService" -}}{{ include "weft.fullname" . }}-policy-relay{{- end -}}
{{- define "weft.relayServerName" -}}{{ include "weft.relayService" . }}.{{ .Release.Namespace }}.svc{{- end -}}
{{- define "weft.relaySecret" -}}
{{- .Values.policyRelay.existingSecret | default (printf "%s-tls" (include "weft.relayService" .)) -}}
{{- end -}}
