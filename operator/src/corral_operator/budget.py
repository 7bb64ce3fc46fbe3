"""The PodDisruptionBudget of a TaskQueue's worker pods. Pure code, no I/O."""

from __future__ import annotations

from typing import Any

from corral_operator import deployment as dep
from corral_operator import models

Body = dict[str, Any]


def budget_name(taskqueue: str) -> str:
    return dep.deployment_name(taskqueue)


def render(owner: dep.Owner, spec: models.TaskQueueSpec) -> Body | None:
    """The PodDisruptionBudget ``spec.worker.disruptionBudget`` asks for, or None."""
    budget = spec.worker.disruption_budget
    if budget is None:
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {
            "name": budget_name(owner.name),
            "namespace": owner.namespace,
            "labels": dep.labels(owner.name),
            "ownerReferences": [owner.reference()],
        },
        "spec": {
            "maxUnavailable": budget.max_unavailable,
            "selector": {"matchLabels": dep.selector_labels(owner.name)},
            # Pods not yet Ready (still starting) may always be evicted: they run nothing.
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }
