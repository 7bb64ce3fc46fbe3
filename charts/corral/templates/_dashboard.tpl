{{/* Name of the dashboard's Deployment and Service. */}}
{{- define "corral.dashboardName" -}}
{{- printf "%s-dashboard" (include "corral.fullname" .) }}
{{- end }}

{{/* Labels that select the dashboard pods; never change them after a release. */}}
{{- define "corral.dashboardSelectorLabels" -}}
app.kubernetes.io/name: {{ include "corral.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: dashboard
{{- end }}

{{/* Checks of the dashboard's values that JSON schema cannot phrase readably. */}}
{{- define "corral.dashboardValidate" -}}
{{- $d := .Values.dashboard }}
{{- if and (not $d.redisUrl) (not $d.redisUrlSecret.name) }}
{{- fail "dashboard.enabled needs dashboard.redisUrl or dashboard.redisUrlSecret.name" }}
{{- end }}
{{- if and $d.allowActions (not $d.tokenSecret.name) }}
{{- fail "dashboard.allowActions needs dashboard.tokenSecret.name: actions require a token" }}
{{- end }}
{{- end }}
