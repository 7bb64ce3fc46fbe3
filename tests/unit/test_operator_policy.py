"""The scaling policy: pure decisions over (params, state, current, load, now)."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from corral_operator.policy import Decision, Load, PolicyState, Reason, ScalingParams, decide

P = ScalingParams(min_replicas=0, max_replicas=10, target_per_replica=100,
                  activation_backlog=1, stabilization_s=60, cooldown_s=300)


def run(params: ScalingParams, steps: list[tuple[float, int, Load | None]],
        current: int = 0, state: PolicyState | None = None) -> list[Decision]:
    """Feed observations (time, -, load) in order, applying each decision."""
    state = state or PolicyState()
    out = []
    for now_s, _, load in steps:
        decision, state = decide(params, state, current, load, now_s)
        out.append(decision)
        current = decision.desired
    return out


def once(current: int, backlog: int, in_flight: int = 0, params: ScalingParams = P,
         state: PolicyState | None = None, now_s: float = 1000.0) -> Decision:
    return decide(params, state or PolicyState(), current, Load(backlog, in_flight), now_s)[0]


# -- the formula and clamping ---------------------------------------------------------


def test_desired_is_ceil_of_load_over_target() -> None:
    assert once(1, 450).desired == 5
    assert once(1, 400, 50).desired == 5  # in-flight tasks count too
    assert once(1, 401).desired == 5


def test_clamped_to_max() -> None:
    d = once(2, 100_000)
    assert d.desired == 10
    assert d.reason is Reason.SCALE_UP


def test_at_max_reason_when_already_there() -> None:
    assert once(10, 100_000).reason is Reason.AT_MAX_REPLICAS


def test_clamped_to_min() -> None:
    params = ScalingParams(min_replicas=3, max_replicas=10, target_per_replica=100)
    assert once(0, 0, params=params).desired == 3
    assert once(3, 0, params=params).desired == 3


def test_max_lowered_below_current_scales_down_at_once() -> None:
    params = ScalingParams(min_replicas=0, max_replicas=4, target_per_replica=100,
                           stabilization_s=600)
    state = PolicyState.resumed(0.0, 8)
    assert once(8, 800, params=params, state=state, now_s=1.0).desired == 4


# -- activation and scale to zero -----------------------------------------------------


def test_activation_threshold_gates_zero_to_one() -> None:
    params = ScalingParams(min_replicas=0, max_replicas=10, target_per_replica=100,
                           activation_backlog=20)
    below = once(0, 19, params=params)
    assert below.desired == 0
    assert below.reason is Reason.BELOW_ACTIVATION
    assert once(0, 20, params=params).desired == 1
    # Once running, the threshold no longer applies.
    assert once(1, 5, params=params).desired == 1


def test_zero_stays_zero_without_work() -> None:
    d = once(0, 0)
    assert d.desired == 0
    assert d.reason is Reason.STABLE


def test_scale_from_zero_jumps_to_full_count() -> None:
    assert once(0, 1000).desired == 10


def test_cooldown_before_zero() -> None:
    params = ScalingParams(min_replicas=0, max_replicas=10, target_per_replica=100,
                           stabilization_s=0, cooldown_s=30)
    state = PolicyState()
    d, state = decide(params, state, 1, Load(5, 0), 0.0)
    assert d.desired == 1
    d, state = decide(params, state, 1, Load(0, 0), 10.0)
    assert (d.desired, d.reason) == (1, Reason.COOLING_DOWN)
    d, state = decide(params, state, 1, Load(0, 0), 29.9)
    assert d.desired == 1
    d, state = decide(params, state, 1, Load(0, 0), 30.0)
    assert (d.desired, d.reason) == (0, Reason.SCALE_TO_ZERO)


def test_in_flight_work_blocks_scale_to_zero() -> None:
    params = ScalingParams(min_replicas=0, max_replicas=10, target_per_replica=100,
                           stabilization_s=0, cooldown_s=10)
    state = PolicyState()
    for t in range(0, 100, 5):
        d, state = decide(params, state, 1, Load(0, 1), float(t))
        assert d.desired == 1
    d, state = decide(params, state, 1, Load(0, 0), 100.0)
    assert d.desired == 1  # the cooldown counts from the last busy observation (95 s)
    d, state = decide(params, state, 1, Load(0, 0), 105.0)
    assert d.desired == 0


def test_cooldown_skips_stabilization_window() -> None:
    params = ScalingParams(min_replicas=0, max_replicas=10, target_per_replica=100,
                           stabilization_s=600, cooldown_s=10)
    state = PolicyState()
    d, state = decide(params, state, 0, Load(500, 0), 0.0)
    assert d.desired == 5
    d, state = decide(params, state, 5, Load(0, 0), 5.0)
    assert d.desired == 5  # stabilizing: the window remembers 5
    d, state = decide(params, state, 5, Load(0, 0), 10.0)
    assert d.desired == 0


def test_min_replicas_above_zero_never_cools_to_zero() -> None:
    params = ScalingParams(min_replicas=1, max_replicas=10, target_per_replica=100,
                           stabilization_s=0, cooldown_s=0)
    state = PolicyState()
    for t in range(10):
        d, state = decide(params, state, 1, Load(0, 0), float(t))
        assert d.desired == 1


def test_first_observation_idle_starts_the_cooldown_now() -> None:
    params = ScalingParams(min_replicas=0, max_replicas=10, target_per_replica=100,
                           stabilization_s=0, cooldown_s=30)
    d, state = decide(params, PolicyState(), 2, Load(0, 0), 1000.0)
    assert d.desired == 1
    d, _ = decide(params, state, 1, Load(0, 0), 1030.0)
    assert d.desired == 0


# -- tolerance ------------------------------------------------------------------------


def test_tolerance_band_holds_near_target() -> None:
    # 5 replicas at 100 each: 550 is 10% over -> hold; 551 is over the band -> 6.
    assert once(5, 550).desired == 5
    assert once(5, 550).reason is Reason.WITHIN_TOLERANCE
    assert once(5, 551).desired == 6
    assert once(5, 450, state=PolicyState(), params=ScalingParams(
        min_replicas=0, max_replicas=10, target_per_replica=100, stabilization_s=0)).desired == 5


def test_tolerance_does_not_block_bigger_moves() -> None:
    params = ScalingParams(min_replicas=0, max_replicas=10, target_per_replica=100,
                           stabilization_s=0)
    assert once(5, 449, params=params).desired == 5  # ceil(4.49) = 5 anyway
    assert once(5, 300, params=params).desired == 3


# -- stabilization window -------------------------------------------------------------


def test_scale_up_is_immediate() -> None:
    d = once(2, 900, state=PolicyState.resumed(999.0, 2))
    assert (d.desired, d.reason) == (9, Reason.SCALE_UP)


def test_scale_down_waits_for_the_window_maximum() -> None:
    params = ScalingParams(min_replicas=0, max_replicas=10, target_per_replica=100,
                           stabilization_s=60, cooldown_s=10_000)
    state = PolicyState()
    d, state = decide(params, state, 0, Load(800, 0), 0.0)
    assert d.desired == 8
    d, state = decide(params, state, 8, Load(300, 0), 10.0)
    assert (d.desired, d.reason) == (8, Reason.STABILIZING)
    d, state = decide(params, state, 8, Load(500, 0), 30.0)
    assert d.desired == 8
    # 60 s after the 8 was recommended, the highest left in the window is 5.
    d, state = decide(params, state, 8, Load(300, 0), 60.0)
    assert (d.desired, d.reason) == (5, Reason.SCALE_DOWN)
    d, state = decide(params, state, 5, Load(300, 0), 90.0)
    assert d.desired == 3


def test_flapping_load_does_not_flap_replicas() -> None:
    params = ScalingParams(min_replicas=0, max_replicas=20, target_per_replica=100,
                           stabilization_s=30, cooldown_s=10_000)
    loads = [1000, 200] * 20
    current, state, seen = 0, PolicyState(), []
    for i, backlog in enumerate(loads):
        d, state = decide(params, state, current, Load(backlog, 0), float(i * 5))
        current = d.desired
        seen.append(current)
    assert set(seen) == {10}


def test_zero_window_scales_down_at_once() -> None:
    params = ScalingParams(min_replicas=0, max_replicas=10, target_per_replica=100,
                           stabilization_s=0)
    assert once(8, 300, params=params).desired == 3


def test_resumed_state_holds_after_restart() -> None:
    """A restarted operator neither scales down before a full window nor to zero
    before a full cooldown."""
    params = ScalingParams(min_replicas=0, max_replicas=10, target_per_replica=100,
                           stabilization_s=20, cooldown_s=40)
    state = PolicyState.resumed(100.0, 6)
    d, state = decide(params, state, 6, Load(0, 0), 100.0)
    assert d.desired == 6
    d, state = decide(params, state, 6, Load(0, 0), 119.0)
    assert d.desired == 6
    d, state = decide(params, state, 6, Load(0, 0), 120.0)
    assert d.desired == 1
    d, state = decide(params, state, 1, Load(0, 0), 140.0)
    assert d.desired == 0


# -- paused and missing metrics -------------------------------------------------------


def test_paused_holds_everything() -> None:
    params = ScalingParams(min_replicas=0, max_replicas=10, target_per_replica=100, paused=True)
    for current, backlog in ((0, 10_000), (7, 0), (3, 300)):
        d = once(current, backlog, params=params)
        assert (d.desired, d.reason) == (current, Reason.PAUSED)


def test_missing_metrics_hold_and_never_scale_to_zero() -> None:
    params = ScalingParams(min_replicas=0, max_replicas=10, target_per_replica=100,
                           stabilization_s=0, cooldown_s=0)
    state = PolicyState.resumed(0.0, 4)
    for t in range(1, 100):
        d, state = decide(params, state, 4, None, float(t))
        assert (d.desired, d.reason) == (4, Reason.METRICS_UNAVAILABLE)


def test_missing_metrics_leave_the_state_alone() -> None:
    state = PolicyState.resumed(0.0, 4)
    _, after = decide(P, state, 4, None, 50.0)
    assert after == state


def test_missing_metrics_still_respect_bounds() -> None:
    params = ScalingParams(min_replicas=2, max_replicas=5, target_per_replica=100)
    assert decide(params, PolicyState(), 0, None, 0.0)[0].desired == 2
    assert decide(params, PolicyState(), 9, None, 0.0)[0].desired == 5


# -- properties -----------------------------------------------------------------------

params_strategy = st.builds(
    lambda lo, span, target, act, window, cool: ScalingParams(
        min_replicas=lo, max_replicas=lo + span, target_per_replica=target,
        activation_backlog=act, stabilization_s=window, cooldown_s=cool),
    st.integers(0, 5), st.integers(1, 20), st.integers(1, 500), st.integers(1, 50),
    st.integers(0, 120), st.integers(0, 600),
)
loads_strategy = st.lists(
    st.one_of(st.none(), st.builds(Load, st.integers(0, 20_000), st.integers(0, 2_000))),
    min_size=1, max_size=40)


@given(params_strategy, loads_strategy, st.integers(0, 30))
def test_desired_always_within_bounds(params: ScalingParams, loads: list[Load | None],
                                      start: int) -> None:
    state, current = PolicyState.resumed(0.0, start), start
    for i, load in enumerate(loads):
        d, state = decide(params, state, current, load, float(i * 3))
        assert params.min_replicas <= d.desired <= params.max_replicas
        if load is None:
            assert d.desired == min(max(current, params.min_replicas), params.max_replicas)
        current = d.desired


@given(params_strategy, st.integers(0, 20_000), st.integers(0, 2_000), st.integers(0, 30))
def test_never_below_what_the_load_needs_when_scaling_up(
    params: ScalingParams, backlog: int, in_flight: int, current: int
) -> None:
    current = min(max(current, params.min_replicas), params.max_replicas)
    d, _ = decide(params, PolicyState(), current, Load(backlog, in_flight), 0.0)
    need = min(math.ceil((backlog + in_flight) / params.target_per_replica),
               params.max_replicas)
    capacity = current * params.target_per_replica
    ratio_ok = current > 0 and abs(backlog + in_flight - capacity) <= 0.1 * capacity + 1e-9
    if need > current and not ratio_ok and (current > 0 or backlog + in_flight
                                             >= params.activation_backlog):
        assert d.desired == need


@given(params_strategy, st.integers(1, 30), st.lists(st.integers(0, 20_000), min_size=1))
def test_scale_to_zero_only_after_cooldown_of_zero_load(
    params: ScalingParams, start: int, backlogs: list[int]
) -> None:
    state, current, last_busy = PolicyState.resumed(0.0, start), start, 0.0
    for i, backlog in enumerate(backlogs):
        now_s = float(i * 7)
        if backlog:
            last_busy = now_s
        d, state = decide(params, state, current, Load(backlog, 0), now_s)
        if current > 0 and d.desired == 0:
            assert backlog == 0
            assert now_s - last_busy >= params.cooldown_s
        current = d.desired


# -- rate and concurrency limits ------------------------------------------------------


def test_tasks_held_back_by_limits_add_no_replicas() -> None:
    # 5 slots of a concurrency limit in flight, 5000 more waiting for them: one replica.
    decision = decide(P, PolicyState(), 1, Load(0, 5, limited=5000), 1000.0)[0]
    assert decision.desired == 1
    assert decision.reason is Reason.HELD_BY_LIMITS
    assert "5000 more held back by limits" in decision.message


def test_limits_cap_the_replicas_a_limited_backlog_asks_for() -> None:
    # Work that can run now still scales; what the limits hold back adds nothing to it.
    decision = decide(P, PolicyState(), 1, Load(300, 200, limited=10_000), 1000.0)[0]
    assert decision.desired == 5 and decision.reason is Reason.SCALE_UP


def test_an_idle_queue_with_only_limited_tasks_keeps_one_replica_not_zero() -> None:
    # Deferred tasks come back on their own time: the last replica stays to claim them
    # while the limited count is above zero, like in-flight work.
    decision = decide(P, PolicyState(last_active_s=0.0), 1, Load(0, 0, limited=3), 1000.0)[0]
    assert decision.desired == 1


@given(st.integers(0, 10_000), st.integers(0, 10_000), st.integers(0, 100_000))
def test_limited_tasks_never_raise_the_desired_count(backlog: int, in_flight: int,
                                                     limited: int) -> None:
    with_limits = decide(P, PolicyState(), 1, Load(backlog, in_flight, limited), 1000.0)[0]
    without = decide(P, PolicyState(), 1, Load(backlog, in_flight), 1000.0)[0]
    assert with_limits.desired == without.desired


def test_a_steady_recommendation_keeps_one_entry_in_the_window() -> None:
    state, current = PolicyState(), 0
    for i in range(120):  # two minutes of polls, one a second
        d, state = decide(P, state, current, Load(250, 0), float(i))
        current = d.desired
    assert current == 3 and len(state.recommendations) == 1


@given(params_strategy, loads_strategy, st.integers(0, 30))
def test_scale_down_stops_at_the_highest_recommendation_of_the_window(
    params: ScalingParams, loads: list[Load | None], start: int
) -> None:
    """The window keeps fewer entries than one per poll; what it decides is as if it
    kept them all."""
    state, current = PolicyState.resumed(0.0, start), start
    history: list[tuple[float, int]] = [(0.0, start)]
    for i, load in enumerate(loads):
        now_s = float(i * 3)
        d, state = decide(params, state, current, load, now_s)
        if load is not None and d.reason is not Reason.SCALE_TO_ZERO and not params.paused:
            history.append((now_s, d.recommended))
            highest = max([r for t, r in history[:-1] if now_s - t < params.stabilization_s]
                          + [d.recommended])
            if d.recommended < current:
                want = min(current, highest)
                assert d.desired == min(max(want, params.min_replicas), params.max_replicas)
        elif load is not None and d.reason is Reason.SCALE_TO_ZERO:
            history = [(now_s, 0)]
        current = d.desired
