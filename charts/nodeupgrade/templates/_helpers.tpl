{{/*
Names are fixed, not derived from the release: the controller's RBAC, Lease
and user roles are cluster-wide and referred to by these names (README,
config/), and one controller serves a cluster.
*/}}
{{- define "nodeupgrade.controllerName" -}}nodeupgrade-controller{{- end }}

{{/* Helm's own labels, on every object (test/chart strips them to compare with config/). */}}
{{- define "nodeupgrade.helmLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}

{{/* Labels of every object but the generated roles: config/'s, plus Helm's own. */}}
{{- define "nodeupgrade.labels" -}}
app.kubernetes.io/name: nodeupgrade
{{ include "nodeupgrade.helmLabels" . }}
{{- end }}

{{/* Labels of the controller's objects, and its pods' selector. */}}
{{- define "nodeupgrade.selectorLabels" -}}
app.kubernetes.io/name: nodeupgrade
app.kubernetes.io/component: controller
{{- end }}

{{- define "nodeupgrade.controllerLabels" -}}
{{ include "nodeupgrade.labels" . }}
app.kubernetes.io/component: controller
{{- end }}

{{/* The image, by digest when one is given. */}}
{{- define "nodeupgrade.image" -}}
{{- if .Values.image.digest -}}
{{- if not (hasPrefix "sha256:" .Values.image.digest) -}}
{{- fail (printf "image.digest %q: want sha256:<64 hex digits>" .Values.image.digest) -}}
{{- end -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end }}

{{/*
Whether an optional prometheus-operator object is rendered: "auto" when its
CRD is served (helm template: --api-versions monitoring.coreos.com/v1/KIND).
*/}}
{{- define "nodeupgrade.operatorObject" -}}
{{- $enabled := index . 0 -}}
{{- $kind := index . 1 -}}
{{- $ctx := index . 2 -}}
{{- if eq (toString $enabled) "auto" -}}
{{- if $ctx.Capabilities.APIVersions.Has (printf "monitoring.coreos.com/v1/%s" $kind) }}true{{ end -}}
{{- else if eq (toString $enabled) "true" -}}
true
{{- else if ne (toString $enabled) "false" -}}
{{- fail (printf "%s enabled: %q, want auto, true or false" $kind (toString $enabled)) -}}
{{- end -}}
{{- end }}
