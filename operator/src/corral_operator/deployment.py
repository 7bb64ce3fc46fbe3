"""The worker Deployment of a TaskQueue, rendered from its spec. Pure code, no I/O."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from corral_operator import models

MANAGER = "corral-operator"
TASKQUEUE_LABEL = "corral.dev/taskqueue"
SPEC_HASH_ANNOTATION = "corral.dev/spec-hash"
DELETION_COST_ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"
CONTAINER_NAME = "worker"
# Time beyond graceSeconds for the worker to release leases and exit after its drain.
TERMINATION_MARGIN_S = 15
# Read-only root filesystem: the worker gets a writable /tmp only.
TMP_VOLUME = "tmp"
# spec.redis.caSecretRef: the CA bundle, mounted read-only; corral.connection reads
# CORRAL_REDIS_CA_CERTS for a rediss:// URL that names no ssl_ca_certs itself.
REDIS_CA_VOLUME = "redis-ca"
REDIS_CA_DIR = "/etc/corral/redis-ca"
REDIS_CA_FILE = "ca.crt"

Body = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Owner:
    """The TaskQueue a Deployment belongs to."""

    name: str
    namespace: str
    uid: str

    def reference(self) -> Body:
        return {
            "apiVersion": models.API_VERSION,
            "kind": models.KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def deployment_name(taskqueue: str) -> str:
    return f"{taskqueue}-worker"


def selector_labels(taskqueue: str) -> dict[str, str]:
    """The Deployment's selector; immutable, so it must never change."""
    return {TASKQUEUE_LABEL: taskqueue, "app.kubernetes.io/component": "worker"}


def labels(taskqueue: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "corral-worker",
        "app.kubernetes.io/instance": taskqueue,
        "app.kubernetes.io/part-of": "corral",
        "app.kubernetes.io/managed-by": MANAGER,
        **selector_labels(taskqueue),
    }


def label_selector(taskqueue: str) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(selector_labels(taskqueue).items()))


def queues_arg(spec: models.TaskQueueSpec) -> str:
    return ",".join(f"{q.name}={q.weight}" for q in spec.queues)


def worker_command(spec: models.TaskQueueSpec) -> list[str]:
    w = spec.worker
    return [
        "corral", "worker", w.app,
        "--queues", queues_arg(spec),
        "--concurrency", str(w.concurrency),
        "--batch-size", str(w.batch_size),
        "--lease-seconds", str(w.lease_seconds),
        "--grace-seconds", str(w.grace_seconds),
        "--metrics-host", "0.0.0.0",
        "--metrics-port", str(w.metrics_port),
        "--worker-id", "$(POD_NAME)",
        "--log-format", "json",
        "--log-level", w.log_level,
    ]


def _env(spec: models.TaskQueueSpec) -> list[Body]:
    redis = spec.redis
    if redis.url_secret_ref is not None:
        ref = redis.url_secret_ref
        url: Body = {"name": "CORRAL_REDIS_URL",
                     "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}
    else:
        url = {"name": "CORRAL_REDIS_URL", "value": redis.url}
    pod_name = {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
    ca = [{"name": "CORRAL_REDIS_CA_CERTS", "value": f"{REDIS_CA_DIR}/{REDIS_CA_FILE}"}] \
        if redis.ca_secret_ref is not None else []
    prefix = {"name": "CORRAL_PREFIX", "value": redis.prefix}
    extra = [e.model_dump(by_alias=True, exclude_none=True) for e in spec.worker.env or ()]
    return [pod_name, url, prefix, *ca, *extra]


def _volumes(spec: models.TaskQueueSpec) -> tuple[list[Body], list[Body]]:
    """The pod's volumes and the worker container's mounts of them."""
    volumes: list[Body] = [{"name": TMP_VOLUME, "emptyDir": {}}]
    mounts: list[Body] = [{"name": TMP_VOLUME, "mountPath": "/tmp"}]
    ca = spec.redis.ca_secret_ref
    if ca is not None:
        volumes.append({"name": REDIS_CA_VOLUME, "secret": {
            "secretName": ca.name, "defaultMode": 0o444,
            "items": [{"key": ca.key, "path": REDIS_CA_FILE}]}})
        mounts.append({"name": REDIS_CA_VOLUME, "mountPath": REDIS_CA_DIR, "readOnly": True})
    return volumes, mounts


def _probe(path: str, period_s: int, failures: int) -> Body:
    return {
        "httpGet": {"path": path, "port": "metrics"},
        "periodSeconds": period_s,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def _container(spec: models.TaskQueueSpec, image: str) -> Body:
    w = spec.worker
    container: Body = {
        "name": CONTAINER_NAME,
        "image": image,
        "command": worker_command(spec),
        "env": _env(spec),
        "ports": [{"name": "metrics", "containerPort": w.metrics_port, "protocol": "TCP"}],
        "resources": w.resources.model_dump(by_alias=True, exclude_none=True),
        "livenessProbe": _probe("/healthz", period_s=10, failures=3),
        "readinessProbe": _probe("/readyz", period_s=5, failures=2),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": _volumes(spec)[1],
    }
    if w.image_pull_policy:
        container["imagePullPolicy"] = w.image_pull_policy
    if w.env_from:
        container["envFrom"] = list(w.env_from)
    return container


def _pod_spec(spec: models.TaskQueueSpec) -> Body:
    w = spec.worker
    pod: Body = {
        "containers": [_container(spec, w.image)],
        "terminationGracePeriodSeconds": w.grace_seconds + TERMINATION_MARGIN_S,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": w.run_as_user,
            "runAsGroup": w.run_as_user,
            "fsGroup": w.run_as_user,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumes": _volumes(spec)[0],
        "enableServiceLinks": False,
    }
    if w.service_account_name is None:
        # Workers talk only to Redis: no API token for the namespace's default account.
        pod["automountServiceAccountToken"] = False
    optional: dict[str, Any] = {
        "nodeSelector": w.node_selector,
        "affinity": w.affinity,
        "topologySpreadConstraints": [c.model_dump(by_alias=True, exclude_none=True)
                                      for c in w.topology_spread_constraints]
        if w.topology_spread_constraints else None,
        "serviceAccountName": w.service_account_name,
        "priorityClassName": w.priority_class_name,
        "tolerations": [t.model_dump(by_alias=True, exclude_none=True)
                        for t in w.tolerations] if w.tolerations else None,
        "imagePullSecrets": [r.model_dump() for r in w.image_pull_secrets]
        if w.image_pull_secrets else None,
    }
    pod.update({k: v for k, v in optional.items() if v})
    return pod


def render(owner: Owner, spec: models.TaskQueueSpec, replicas: int) -> Body:
    """The whole Deployment, as applied with server-side apply. The spec hash
    annotation covers everything but the replica count, which the scaler owns."""
    name = owner.name
    template_labels = {**(spec.worker.pod_labels or {}), **labels(name)}
    body: Body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": deployment_name(name),
            "namespace": owner.namespace,
            "labels": labels(name),
            "annotations": {},
            "ownerReferences": [owner.reference()],
        },
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": selector_labels(name)},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": template_labels,
                             "annotations": dict(spec.worker.pod_annotations or {})},
                "spec": _pod_spec(spec),
            },
        },
    }
    body["metadata"]["annotations"][SPEC_HASH_ANNOTATION] = spec_hash(body)
    return body


def spec_hash(body: Body) -> str:
    """Hash of the rendered Deployment without its replica count."""
    without = {**body, "spec": {k: v for k, v in body["spec"].items() if k != "replicas"}}
    without["metadata"] = {k: v for k, v in body["metadata"].items() if k != "annotations"}
    text = json.dumps(without, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]

