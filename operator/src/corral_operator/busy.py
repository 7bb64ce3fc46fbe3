"""Never scale below the busy pods. Pure code, no I/O.

A scale-down removes pods; the ReplicaSet picks the ones with the lowest deletion
cost, which the operator sets to 0 on idle pods. That keeps busy pods only while the
new count is at least the number of busy pods, so the count is held there: a
scale-down waits for busy pods to finish, for up to ``max_drain_s`` seconds, after
which the policy's count applies and the workers drain as usual (graceSeconds).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from corral_operator.policy import Decision, Reason


def busy_pods(pod_names: Iterable[str], in_flight_by_worker: Mapping[str, int]) -> frozenset[str]:
    """The pods whose worker (worker id = pod name) has tasks in flight."""
    return frozenset(p for p in pod_names if in_flight_by_worker.get(p, 0) > 0)


@dataclass(frozen=True, slots=True)
class BusyHold:
    """When the current wait for busy pods began (None: no wait)."""

    since_s: float | None = None


def hold_for_busy(
    decision: Decision, busy: int, hold: BusyHold, now_s: float, max_drain_s: float
) -> tuple[Decision, BusyHold]:
    """``decision`` with its scale-down stopped at ``busy`` pods, and the next hold."""
    floor = min(busy, decision.current)
    if decision.desired >= floor:
        return decision, BusyHold()
    since_s = now_s if hold.since_s is None else hold.since_s
    waited_s = now_s - since_s
    if waited_s >= max_drain_s:
        message = (f"{decision.message}; {busy} busy pod(s) waited for {waited_s:.0f}s "
                   f"(maxDrainSeconds {max_drain_s:.0f}): scaling down anyway")
        return Decision(decision.current, decision.desired, decision.recommended,
                        decision.reason, message), BusyHold(since_s)
    message = (f"{decision.message}; waiting for {busy} busy pod(s) to finish "
               f"({waited_s:.0f}s of maxDrainSeconds {max_drain_s:.0f})")
    held = Decision(decision.current, floor, decision.recommended,
                    Reason.SCALE_DOWN if floor < decision.current else Reason.WAITING_FOR_BUSY_PODS,
                    message)
    return held, BusyHold(since_s)
