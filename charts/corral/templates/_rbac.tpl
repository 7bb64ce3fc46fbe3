{{/*
What the operator does in a namespace it serves. Each rule says which part of
the operator needs it; nothing here lists or reads Secrets wholesale.
*/}}
{{- define "corral.rbac.namespacedRules" -}}
# TaskQueues: watched; patched by kopf for its finalizer and progress annotations.
- apiGroups: ["corral.dev"]
  resources: ["taskqueues"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["corral.dev"]
  resources: ["taskqueues/status"]
  verbs: ["get", "patch"]
# The worker Deployments the operator owns and scales.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
# Worker pods: only read, and patched with controller.kubernetes.io/pod-deletion-cost
# and the annotations that keep node autoscalers off busy workers.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch", "patch"]
# spec.worker.disruptionBudget: one PodDisruptionBudget per TaskQueue.
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "create", "patch", "delete"]
# ScaledUp/ScaledDown and kopf's handler events.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
# Redis URLs referenced by spec.redis.urlSecretRef: read one by name, never list.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
{{- if and .Values.peering.enabled (not (include "corral.clusterWide" .)) }}
# kopf peering of the operator replicas, one KopfPeering per served namespace.
- apiGroups: ["kopf.dev", "zalando.org"]
  resources: ["kopfpeerings"]
  verbs: ["get", "list", "watch", "patch"]
{{- end }}
{{- end }}

{{/* What kopf itself reads or writes at cluster scope. */}}
{{- define "corral.rbac.clusterRules" -}}
# kopf watches CRDs to notice when served resources appear or change.
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
{{- if not (include "corral.clusterWide" .) }}
# A namespaced kopf lists and watches namespaces to match its --namespace flags.
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}
{{- if and .Values.peering.enabled (include "corral.clusterWide" .) }}
# kopf peering of the operator replicas, cluster-wide.
- apiGroups: ["kopf.dev", "zalando.org"]
  resources: ["clusterkopfpeerings"]
  verbs: ["get", "list", "watch", "patch"]
{{- end }}
{{- end }}
