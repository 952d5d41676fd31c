{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "kubesweep.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the release's objects. */}}
{{- define "kubesweep.fullname" -}}
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

{{- define "kubesweep.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kubesweep.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubesweep.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "kubesweep.labels" -}}
helm.sh/chart: {{ include "kubesweep.chart" . }}
{{ include "kubesweep.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: kubesweep
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "kubesweep.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kubesweep.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
RBAC rules for the namespaced resources the operator works on. Used by a ClusterRole when it
watches every namespace, and by one Role per namespace otherwise. Least privilege: kopf patches
Sweeps (finalizer-free; progress annotations) and their status; the operator owns SweepRuns and
Jobs, reads pods and their logs (metrics.source logs), deletes a stopped run's pods, posts events.
*/}}
{{- define "kubesweep.namespacedRules" -}}
{{- /* Exactly what the operator calls (tests/cluster/test_chart_rbac.py runs it with these rules):
kopf watches Sweeps and patches its progress annotations on them; SweepRuns are created (get on a
409) and their status patched; Jobs are created and suspended; pods are watched, read (push
authentication) and deleted when stopped; logs are read; Events are created. */}}
- apiGroups: ["kubesweep.io"]
  resources: ["sweeps"]
  verbs: ["list", "watch", "patch"]
- apiGroups: ["kubesweep.io"]
  resources: ["sweeps/status"]
  verbs: ["patch"]
- apiGroups: ["kubesweep.io"]
  resources: ["sweepruns"]
  verbs: ["get", "list", "create"]
- apiGroups: ["kubesweep.io"]
  resources: ["sweepruns/status"]
  verbs: ["patch"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["create", "patch"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch", "delete"]
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end }}

{{/* Arguments of the operator container: ENTRYPOINT is `kubesweep`. */}}
{{- define "kubesweep.args" -}}
- operator
- --metrics-port
- {{ .Values.ports.metrics | quote }}
- --push-port
- {{ .Values.ports.push | quote }}
- --liveness
- {{ printf "http://0.0.0.0:%v/healthz" .Values.ports.health | quote }}
{{- if .Values.watchNamespaces }}
{{- range .Values.watchNamespaces }}
- --namespace
- {{ . | quote }}
{{- end }}
{{- else }}
- --all-namespaces
{{- end }}
{{- range .Values.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end }}
