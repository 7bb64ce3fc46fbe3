"""The worker Deployments and worker pods as the operator last saw them through
its watches, so a poll reads neither from the API server (N TaskQueues polling
every second would otherwise cost N GETs and N LISTs a second, and most of the
operator's CPU). Pure code: ``handlers`` feeds it the watch events."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from corral_operator.deployment import SPEC_HASH_ANNOTATION, TASKQUEUE_LABEL

Body = dict[str, Any]


def slim(body: Mapping[str, Any]) -> Body:
    """The fields the controller reads, in the API's shape (a full Deployment is
    several kilobytes; a thousand of them are kept)."""
    meta = body.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    status = body.get("status") or {}
    return {
        "metadata": {
            "name": meta.get("name"), "namespace": meta.get("namespace"),
            "generation": meta.get("generation"),
            "annotations": {k: v for k, v in annotations.items() if k == SPEC_HASH_ANNOTATION},
        },
        "spec": {"replicas": (body.get("spec") or {}).get("replicas")},
        "status": {k: status[k] for k in ("replicas", "readyReplicas") if k in status},
    }


class DeploymentCache:
    def __init__(self) -> None:
        self._bodies: dict[tuple[str, str], Body] = {}

    def seen(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """One watch event: ``ADDED``, ``MODIFIED``, ``DELETED`` (None: listed)."""
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace")), str(meta.get("name")))
        if event_type == "DELETED":
            self._bodies.pop(key, None)
        else:
            self._bodies[key] = slim(body)

    def get(self, namespace: str, name: str) -> Body | None:
        return self._bodies.get((namespace, name))

    def __len__(self) -> int:
        return len(self._bodies)


def newer(cached: Body, written: Body | None) -> Body:
    """The watched copy, unless our own last write is newer (the watch lags): every
    write of ours that matters changes the spec, so the generation tells."""
    if written is None:
        return cached
    return written if _generation(cached) < _generation(written) else cached


def _generation(body: Body) -> int:
    return int((body.get("metadata") or {}).get("generation") or 0)


def slim_pod(body: Mapping[str, Any]) -> Body:
    """What ``workerpods`` and the pure modules behind it read of a pod."""
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    return {
        "metadata": {
            "name": meta.get("name"), "namespace": meta.get("namespace"),
            "annotations": dict(meta.get("annotations") or {}),
            "deletionTimestamp": meta.get("deletionTimestamp"),
        },
        "status": {"phase": status.get("phase"),
                   "conditions": [dict(c) for c in status.get("conditions") or ()]},
    }


class PodCache:
    """Worker pods by (namespace, TaskQueue), from the label every worker pod has."""

    def __init__(self) -> None:
        self._pods: dict[tuple[str, str], dict[str, Body]] = {}

    def seen(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        meta = body.get("metadata") or {}
        taskqueue = (meta.get("labels") or {}).get(TASKQUEUE_LABEL)
        if taskqueue is None:
            return
        key, name = (str(meta.get("namespace")), str(taskqueue)), str(meta.get("name"))
        if event_type == "DELETED":
            pods = self._pods.get(key)
            if pods is not None:
                pods.pop(name, None)
                if not pods:
                    del self._pods[key]
        else:
            self._pods.setdefault(key, {})[name] = slim_pod(body)

    def get(self, namespace: str, taskqueue: str) -> list[Body]:
        return list(self._pods.get((namespace, taskqueue), {}).values())

    def count(self, namespace: str, taskqueue: str) -> int:
        return len(self._pods.get((namespace, taskqueue), ()))
