"""TaskQueue status and conditions, built from what one reconcile observed. Pure code."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from corral_operator.policy import Decision, Reason

Body = dict[str, Any]
Status = Literal["True", "False", "Unknown"]


@dataclass(frozen=True, slots=True)
class ConditionUpdate:
    type: str
    status: Status
    reason: str
    message: str


def merge_conditions(
    previous: Iterable[Mapping[str, Any]],
    updates: Iterable[ConditionUpdate],
    generation: int | None,
    now: str,
) -> list[Body]:
    """New conditions; ``lastTransitionTime`` moves only when a status flips."""
    before = {c.get("type"): c for c in previous}
    out: list[Body] = []
    for u in updates:
        old = before.get(u.type)
        changed = old is None or old.get("status") != u.status
        since = now if changed or not old or not old.get("lastTransitionTime") \
            else old["lastTransitionTime"]
        entry: Body = {"type": u.type, "status": u.status, "reason": u.reason,
                       "message": u.message[:1024], "lastTransitionTime": since}
        if generation is not None:
            entry["observedGeneration"] = generation
        out.append(entry)
    return out


def redis_condition(error: str | None, reason: str, queues: int) -> ConditionUpdate:
    if error is None:
        return ConditionUpdate("RedisReachable", "True", "Connected",
                               f"read the depths of {queues} queue(s)")
    return ConditionUpdate("RedisReachable", "False", reason, error)


def scaling_condition(decision: Decision | None, problem: str | None = None) -> ConditionUpdate:
    if decision is None:
        return ConditionUpdate("Scaling", "False", "InvalidSpec", problem or "")
    if decision.reason in (Reason.PAUSED, Reason.METRICS_UNAVAILABLE):
        return ConditionUpdate("Scaling", "False", decision.reason.value, decision.message)
    return ConditionUpdate("Scaling", "True", decision.reason.value, decision.message)


def ready_condition(
    desired: int, ready: int, problem: tuple[str, str] | None = None
) -> ConditionUpdate:
    """``problem`` is (reason, message) when the Deployment could not be reconciled."""
    if problem is not None:
        return ConditionUpdate("Ready", "False", *problem)
    if desired == 0:
        return ConditionUpdate("Ready", "True", "ScaledToZero", "no worker replicas wanted")
    if ready >= desired:
        return ConditionUpdate("Ready", "True", "WorkersReady",
                               f"{ready} of {desired} worker replicas ready")
    return ConditionUpdate("Ready", "False", "WorkersNotReady",
                           f"{ready} of {desired} worker replicas ready")
