{{/*
Chart name, overridable with nameOverride.
*/}}
{{- define "kubetune.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified name of the release's objects. A release named like the chart
(`helm install kubetune charts/kubetune`) gives plain "kubetune".
*/}}
{{- define "kubetune.fullname" -}}
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
Chart name and version for the helm.sh/chart label.
*/}}
{{- define "kubetune.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every object of the release.
*/}}
{{- define "kubetune.labels" -}}
helm.sh/chart: {{ include "kubetune.chart" . }}
{{ include "kubetune.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: kubetune
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Labels that select the operator Pod (Deployment selector, Service selector).
They must never change between chart versions: a Deployment's selector is immutable.
*/}}
{{- define "kubetune.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubetune.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
ServiceAccount the operator runs as.
*/}}
{{- define "kubetune.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kubetune.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Operator image reference; the tag defaults to the chart's appVersion.
*/}}
{{- define "kubetune.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
Default trainer image reference; the tag defaults to the chart's appVersion.
*/}}
{{- define "kubetune.trainerImage" -}}
{{- printf "%s:%s" .Values.trainer.image.repository (default .Chart.AppVersion .Values.trainer.image.tag) }}
{{- end }}

{{/*
The port the operator serves /metrics on; 0 tells the operator to serve none.
*/}}
{{- define "kubetune.metricsPort" -}}
{{- if .Values.metrics.enabled }}{{ .Values.metrics.port | int }}{{ else }}0{{ end }}
{{- end }}

{{/*
RBAC rules on namespaced resources: what the operator does to TuningJobs, Datasets and
the objects it creates for them. Used by the ClusterRole (all namespaces) or by a Role in
each watched namespace. There is deliberately no rule on Secrets: the Hugging Face token
reaches the trainer through env.valueFrom.secretKeyRef, which the kubelet resolves with
its own credentials, so the operator never reads one.
*/}}
{{- define "kubetune.namespacedRules" -}}
# Our resources: listed and watched (the operator writes only their status).
- apiGroups: ["kubetune.io"]
  resources: ["tuningjobs", "datasets"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["kubetune.io"]
  resources: ["tuningjobs/status", "datasets/status"]
  verbs: ["get", "patch"]
# Every child names its TuningJob or Dataset as owner with blockOwnerDeletion; clusters that
# enforce owner-reference permissions (OpenShift) then require update on the owner's finalizers.
- apiGroups: ["kubetune.io"]
  resources: ["tuningjobs/finalizers", "datasets/finalizers"]
  verbs: ["update"]
# Training, preflight and dataset-validation Jobs, owned by a TuningJob or a Dataset (the
# garbage collector deletes them with it); patch carries spec.suspend to a run's Job.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "patch"]
# The rendered trainer config, mounted into the training Pod (created once, never read back).
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["create"]
# The headless Service of a multi-node run (stable Pod names for the rendezvous), owned by its TuningJob.
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "create"]
# Each TuningJob's work volume (checkpoints, the finished model), owned by the TuningJob so the
# garbage collector deletes it; an existing claim of that name is read to check it is ours.
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["get", "create"]
# Pod state, termination messages and log tails feed status.progress/result/logTail.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
# Events on TuningJobs and Datasets, so that `kubectl describe` tells the story (core v1 Events,
# the API the operator and kopf post to); list: the Job controller's FailedCreate on a Job that
# stays without a Pod (a ResourceQuota or admission policy refused it), read to say why.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "list"]
{{- end }}
