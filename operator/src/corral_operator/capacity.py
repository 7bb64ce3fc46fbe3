"""Worker pods waiting for nodes, and what the Scaling condition says of them.
Pure code, no I/O."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from corral_operator.policy import Decision, Reason

# Decisions that mean "nothing to change": only then is the wait for nodes the news.
_QUIET = (Reason.STABLE, Reason.WITHIN_TOLERANCE, Reason.AT_MAX_REPLICAS, Reason.STABILIZING,
          Reason.COOLING_DOWN)


def unschedulable(pod: Mapping[str, Any]) -> bool:
    """Pending because the scheduler found no node for it (the state a node
    autoscaler reacts to), as opposed to pulling an image or starting."""
    status = pod.get("status") or {}
    if status.get("phase") != "Pending" or (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    return any(c.get("type") == "PodScheduled" and c.get("status") == "False"
               and c.get("reason") == "Unschedulable" for c in status.get("conditions") or ())


def pending_replicas(pods: Iterable[Mapping[str, Any]]) -> int:
    return sum(1 for pod in pods if unschedulable(pod))


def explain(decision: Decision, pending: int) -> Decision:
    """``decision`` with reason CapacityPending when pods wait for nodes and the
    policy has nothing else to say."""
    if pending == 0 or decision.changed or decision.reason not in _QUIET:
        return decision
    message = (f"{pending} worker pod(s) wait for a node: waiting for the node "
               f"autoscaler to add capacity; {decision.message}")
    return Decision(decision.current, decision.desired, decision.recommended,
                    Reason.CAPACITY_PENDING, message)
