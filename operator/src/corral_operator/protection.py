"""Worker pod annotations for node autoscalers. Pure code, no I/O.

While a pod's worker has tasks in flight (and for ``idle_s`` seconds after), the pod
carries ``karpenter.sh/do-not-disrupt: "true"`` (Karpenter neither consolidates nor
drains its node) and ``cluster-autoscaler.kubernetes.io/safe-to-evict: "false"``
(the cluster-autoscaler does not scale its node down). Idle pods carry neither, so
nodes with only idle workers can still be consolidated.

The ``pod-deletion-cost`` points the same way: the ReplicaSet removes the pod with
the lowest cost first, and Karpenter adds a pod's cost (divided by 2^27) to the
price of evicting it, so it consolidates the nodes of idle pods first. A cost of
``COST_PER_TASK`` per task in flight makes a pod with 8 tasks as dear to Karpenter
as two idle pods; idle pods cost 0 (the ReplicaSet's and Karpenter's default).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from corral_operator.deployment import DELETION_COST_ANNOTATION as DELETION_COST

DO_NOT_DISRUPT = "karpenter.sh/do-not-disrupt"
SAFE_TO_EVICT = "cluster-autoscaler.kubernetes.io/safe-to-evict"
PROTECTED = {DO_NOT_DISRUPT: "true", SAFE_TO_EVICT: "false"}
COST_PER_TASK = 2**24
MAX_COST = 2**31 - 1  # the annotation is an int32


@dataclass(frozen=True, slots=True)
class PodView:
    """What the plan needs of one live worker pod."""

    name: str
    annotations: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class ProtectionParams:
    enabled: bool = True
    idle_s: float = 30.0
    # Keys the user sets on the pod template: left as they are.
    user_keys: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class ProtectionState:
    """When each pod's worker was last seen with tasks in flight."""

    last_busy_s: Mapping[str, float] = field(default_factory=dict)


# A merge patch of annotations: None removes the key.
Patch = dict[str, str | None]


def deletion_cost(in_flight: int) -> int:
    return min(max(in_flight, 0) * COST_PER_TASK, MAX_COST)


def plan(
    pods: Iterable[PodView],
    in_flight_by_worker: Mapping[str, int],
    params: ProtectionParams,
    state: ProtectionState,
    now_s: float,
    with_costs: bool,
) -> tuple[dict[str, Patch], ProtectionState]:
    """Per pod, the annotations to change (only pods with a change), and the next state.
    ``with_costs``: also set the deletion costs (before a scale-down)."""
    patches: dict[str, Patch] = {}
    last_busy: dict[str, float] = {}
    for pod in pods:
        in_flight = in_flight_by_worker.get(pod.name, 0)
        seen_s = now_s if in_flight > 0 else state.last_busy_s.get(pod.name)
        if seen_s is not None:
            last_busy[pod.name] = seen_s
        protect = params.enabled and seen_s is not None and now_s - seen_s < params.idle_s
        wanted: Patch = {k: (v if protect else None) for k, v in PROTECTED.items()
                         if k not in params.user_keys}
        if with_costs:
            wanted[DELETION_COST] = str(deletion_cost(in_flight))
        patch = {k: v for k, v in wanted.items() if pod.annotations.get(k) != v}
        if patch:
            patches[pod.name] = patch
    return patches, ProtectionState(last_busy)


def protected(annotations: Mapping[str, str]) -> bool:
    return all(annotations.get(k) == v for k, v in PROTECTED.items())
