"""The scaling policy: how many worker replicas a TaskQueue should have.
Pure code, no I/O: the controller feeds it what it observed and the time.

One decision, in order:

1. Paused: hold the current count. No metrics (Redis unreachable): hold it too,
   within [min_replicas, max_replicas]; a missing metric never scales anything,
   least of all to zero.
2. ``load = backlog + in_flight``; ``raw = ceil(load / target_per_replica)``. Tasks a
   rate or concurrency limit holds back (``limited``) are not in the load: more
   replicas would not run them sooner. What a concurrency limit lets run is in
   ``in_flight`` (its slots), so the limit caps the replicas its backlog asks for.
3. From zero, the load must reach ``activation_backlog`` before one replica starts.
4. With ``min_replicas == 0``, a running Deployment keeps at least one replica
   until the load (and the limited count) has been zero for ``cooldown_s``; then it
   goes straight to zero.
5. Tolerance: while the load per replica is within 10% of the target, keep the
   current count (no flapping around a boundary).
6. Clamp to ``[min_replicas, max_replicas]``.
7. Scale up at once. Scale down only to the highest recommendation of the last
   ``stabilization_s`` seconds, so a brief dip does not remove replicas that a
   refilled queue needs a moment later.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import StrEnum

TOLERANCE = 0.1


class Reason(StrEnum):
    SCALE_UP = "ScaleUp"
    SCALE_DOWN = "ScaleDown"
    SCALE_TO_ZERO = "ScaleToZero"
    STABLE = "Stable"
    WITHIN_TOLERANCE = "WithinTolerance"
    STABILIZING = "Stabilizing"
    COOLING_DOWN = "CoolingDown"
    BELOW_ACTIVATION = "BelowActivation"
    AT_MAX_REPLICAS = "AtMaxReplicas"
    PAUSED = "Paused"
    METRICS_UNAVAILABLE = "MetricsUnavailable"
    # Counted with the tasks the limits hold back, more replicas would be wanted.
    HELD_BY_LIMITS = "HeldByLimits"
    # Set after the policy, by corral_operator.busy and .capacity.
    WAITING_FOR_BUSY_PODS = "WaitingForBusyPods"
    CAPACITY_PENDING = "CapacityPending"


@dataclass(frozen=True, slots=True)
class ScalingParams:
    min_replicas: int
    max_replicas: int
    target_per_replica: int
    activation_backlog: int = 1
    stabilization_s: float = 60.0
    cooldown_s: float = 300.0
    paused: bool = False
    tolerance: float = TOLERANCE


@dataclass(frozen=True, slots=True)
class Load:
    backlog: int
    in_flight: int
    limited: int = 0  # held back by rate or concurrency limits: not part of the load

    @property
    def total(self) -> int:
        return self.backlog + self.in_flight


@dataclass(frozen=True, slots=True)
class PolicyState:
    """What the policy remembers between decisions."""

    # (time_s, recommended replicas), oldest first, within the stabilization window.
    recommendations: tuple[tuple[float, int], ...] = ()
    # Last time the load was above zero; the cooldown counts from here.
    last_active_s: float | None = None

    @classmethod
    def resumed(cls, now_s: float, current: int) -> PolicyState:
        """State for a controller that starts (or restarts) next to running replicas:
        as if it had just recommended them and just seen work, so a restart neither
        scales down before a full window nor to zero before a full cooldown."""
        return cls(recommendations=((now_s, current),), last_active_s=now_s)


@dataclass(frozen=True, slots=True)
class Decision:
    current: int
    desired: int
    recommended: int  # after activation, cooldown, tolerance and clamping
    reason: Reason
    message: str

    @property
    def changed(self) -> bool:
        return self.desired != self.current


def decide(
    params: ScalingParams, state: PolicyState, current: int, load: Load | None, now_s: float
) -> tuple[Decision, PolicyState]:
    """The desired replica count and the policy's next state."""
    if params.paused:
        return _hold(current, Reason.PAUSED, "scaling is paused"), state
    if load is None:
        # The bounds still apply: they come from the spec, not from a metric.
        bounded = min(max(current, params.min_replicas), params.max_replicas)
        decision = Decision(current, bounded, bounded, Reason.METRICS_UNAVAILABLE,
                            "no queue metrics; holding the replica count")
        return decision, state

    # Tasks held back by limits are work to come: a queue with them is not idle.
    busy = load.total > 0 or load.limited > 0
    last_active_s = now_s if busy or state.last_active_s is None else state.last_active_s
    idle_s = now_s - last_active_s
    if current > 0 and params.min_replicas == 0 and not busy and idle_s >= params.cooldown_s:
        decision = Decision(current, 0, 0, Reason.SCALE_TO_ZERO,
                            f"queues idle for {idle_s:.0f}s (cooldown {params.cooldown_s:.0f}s)")
        return decision, PolicyState(((now_s, 0),), last_active_s)

    raw = math.ceil(load.total / params.target_per_replica)
    recommended, note = _recommend(params, current, load, raw)
    recommended = min(max(recommended, params.min_replicas), params.max_replicas)
    window = _window(state.recommendations, now_s, params.stabilization_s, recommended)
    # Up at once; down only as far as the window's highest recommendation allows.
    highest = max(r for _, r in window)
    desired = recommended if recommended >= current else min(current, highest)
    desired = min(max(desired, params.min_replicas), params.max_replicas)

    reason = _reason(current, desired, recommended, raw, params, note)
    if reason is Reason.STABLE and _held_by_limits(params, load, raw):
        reason = Reason.HELD_BY_LIMITS
    held = f" ({load.limited} more held back by limits)" if load.limited else ""
    message = (f"backlog {load.backlog} + in flight {load.in_flight} = {load.total}{held}, "
               f"target {params.target_per_replica} per replica: {raw} wanted, "
               f"{recommended} recommended, {desired} desired")
    new_state = replace(state, recommendations=window, last_active_s=last_active_s)
    return Decision(current, desired, recommended, reason, message), new_state


def _recommend(params: ScalingParams, current: int, load: Load, raw: int) -> tuple[int, Reason]:
    """Replicas for this observation alone, with the reason when a rule changed it."""
    if current == 0:
        if load.total < params.activation_backlog:
            return 0, Reason.BELOW_ACTIVATION if load.total else Reason.STABLE
        return max(raw, 1), Reason.STABLE
    if load.total == 0 and params.min_replicas == 0:
        return 1, Reason.COOLING_DOWN  # the last replica stays until the cooldown is over
    capacity = current * params.target_per_replica
    # Compared without dividing, so that exactly 10% off counts as within the band.
    if raw != current and abs(load.total - capacity) <= params.tolerance * capacity + 1e-9:
        return current, Reason.WITHIN_TOLERANCE
    return max(raw, 1), Reason.STABLE


def _held_by_limits(params: ScalingParams, load: Load, raw: int) -> bool:
    """Whether the limits alone keep the replica count down."""
    with_limited = math.ceil((load.total + load.limited) / params.target_per_replica)
    return load.limited > 0 and min(with_limited, params.max_replicas) > raw


def _window(
    recommendations: tuple[tuple[float, int], ...], now_s: float, window_s: float,
    recommended: int,
) -> tuple[tuple[float, int], ...]:
    """The stabilization window with ``recommended`` added. Only its highest value is
    ever read, so an entry is dropped as soon as a later one is as high: it could
    never be the highest again (the later one stays in the window longer). A steady
    recommendation keeps one entry instead of one per poll."""
    kept = tuple((t, r) for t, r in recommendations if now_s - t < window_s and r > recommended)
    return (*kept, (now_s, recommended))


def _reason(
    current: int, desired: int, recommended: int, raw: int, params: ScalingParams, note: Reason
) -> Reason:
    if desired > current:
        return Reason.SCALE_UP
    if desired < current:
        return Reason.SCALE_DOWN
    if recommended < current:
        return Reason.STABILIZING
    if note is not Reason.STABLE:
        return note
    if raw > params.max_replicas:
        return Reason.AT_MAX_REPLICAS
    return Reason.STABLE


def _hold(current: int, reason: Reason, message: str) -> Decision:
    return Decision(current, current, current, reason, message)
