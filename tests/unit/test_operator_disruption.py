"""Worker pods and node autoscalers, pure parts: the busy-pod floor (``busy``), the
annotations (``protection``), pods waiting for nodes (``capacity``), the
PodDisruptionBudget (``budget``) and the scheduling knobs of the pod template."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from corral_operator import budget, capacity, models, protection
from corral_operator import deployment as dep
from corral_operator.busy import BusyHold, busy_pods, hold_for_busy
from corral_operator.policy import Decision, Reason
from corral_operator.protection import (
    DELETION_COST,
    DO_NOT_DISRUPT,
    SAFE_TO_EVICT,
    PodView,
    ProtectionParams,
    ProtectionState,
    plan,
)
from tests.unit.test_operator_models import VALID, with_change

OWNER = dep.Owner("emails", "shop", "uid-1")


def scale_down(current: int, desired: int) -> Decision:
    return Decision(current, desired, desired, Reason.SCALE_DOWN, "policy says so")


# -- busy: never below the busy pods -------------------------------------------------------


def test_busy_pods_are_the_live_pods_with_tasks_in_flight() -> None:
    assert busy_pods(["a", "b", "c"], {"a": 2, "c": 0, "gone": 5}) == {"a"}


def test_a_scale_down_stops_at_the_busy_pods_and_says_so() -> None:
    held, hold = hold_for_busy(scale_down(6, 2), busy=4, hold=BusyHold(), now_s=100.0,
                               max_drain_s=60)
    assert (held.current, held.desired, held.recommended) == (6, 4, 2)
    assert held.reason is Reason.SCALE_DOWN  # the idle pods still go
    assert "waiting for 4 busy pod(s) to finish (0s of maxDrainSeconds 60)" in held.message
    assert hold == BusyHold(100.0)
    # All remaining pods busy: nothing changes, and the reason says why.
    held, hold = hold_for_busy(scale_down(4, 2), busy=4, hold=hold, now_s=130.0, max_drain_s=60)
    assert (held.desired, held.reason) == (4, Reason.WAITING_FOR_BUSY_PODS)
    assert "(30s of maxDrainSeconds 60)" in held.message


def test_past_max_drain_the_policy_count_applies() -> None:
    _, hold = hold_for_busy(scale_down(4, 2), busy=4, hold=BusyHold(), now_s=0.0, max_drain_s=60)
    decision, hold = hold_for_busy(scale_down(4, 2), busy=4, hold=hold, now_s=60.0,
                                   max_drain_s=60)
    assert decision.desired == 2
    assert "scaling down anyway" in decision.message


def test_the_hold_ends_when_no_longer_needed() -> None:
    _, hold = hold_for_busy(scale_down(4, 2), busy=4, hold=BusyHold(), now_s=0.0, max_drain_s=60)
    decision, hold = hold_for_busy(scale_down(4, 2), busy=1, hold=hold, now_s=10.0,
                                   max_drain_s=60)
    assert decision.desired == 2 and hold == BusyHold()
    up = Decision(2, 5, 5, Reason.SCALE_UP, "more")
    assert hold_for_busy(up, busy=2, hold=BusyHold(), now_s=0, max_drain_s=60)[0] is up


@given(current=st.integers(0, 50), desired=st.integers(0, 50), busy=st.integers(0, 60),
       waited_s=st.floats(0, 100), max_drain_s=st.floats(1, 100))
def test_never_below_the_busy_pods_within_the_bound(
        current: int, desired: int, busy: int, waited_s: float, max_drain_s: float) -> None:
    decision = Decision(current, desired, desired, Reason.STABLE, "")
    held, _ = hold_for_busy(decision, busy, BusyHold(0.0), waited_s, max_drain_s)
    assert held.desired >= desired  # it only ever holds back a scale-down
    assert held.desired <= max(current, desired)  # and never scales up
    if waited_s < max_drain_s:
        assert held.desired >= min(busy, current)


# -- protection: annotations and deletion costs -----------------------------------------------


def pods(*names: str, **annotations: dict[str, str]) -> list[PodView]:
    return [PodView(n, annotations.get(n, {})) for n in names]


def test_busy_pods_get_both_annotations_idle_pods_none() -> None:
    patches, _ = plan(pods("a", "b"), {"a": 1}, ProtectionParams(), ProtectionState(), 0.0,
                      with_costs=False)
    assert patches == {"a": {DO_NOT_DISRUPT: "true", SAFE_TO_EVICT: "false"}}


def test_only_changes_are_sent() -> None:
    done = {DO_NOT_DISRUPT: "true", SAFE_TO_EVICT: "false"}
    patches, _ = plan(pods("a", "b", a=done), {"a": 1}, ProtectionParams(), ProtectionState(),
                      0.0, with_costs=False)
    assert patches == {}


def test_protection_lasts_idle_s_after_the_last_task() -> None:
    params = ProtectionParams(idle_s=30)
    _, state = plan(pods("a"), {"a": 1}, params, ProtectionState(), 0.0, with_costs=False)
    on = {"a": {DO_NOT_DISRUPT: "true", SAFE_TO_EVICT: "false"}}
    patches, state = plan(pods("a", a=on["a"]), {}, params, state, 29.0, with_costs=False)
    assert patches == {}
    patches, state = plan(pods("a", a=on["a"]), {}, params, state, 30.0, with_costs=False)
    assert patches == {"a": {DO_NOT_DISRUPT: None, SAFE_TO_EVICT: None}}
    assert state.last_busy_s == {"a": 0.0}
    # Pods that are gone are forgotten.
    assert plan([], {}, params, state, 31.0, with_costs=False)[1].last_busy_s == {}


def test_switched_off_removes_them_but_leaves_the_users_own() -> None:
    on = {DO_NOT_DISRUPT: "true", SAFE_TO_EVICT: "false"}
    params = ProtectionParams(enabled=False, user_keys=frozenset({SAFE_TO_EVICT}))
    patches, _ = plan(pods("a", a=on), {"a": 3}, params, ProtectionState(), 0.0,
                      with_costs=False)
    assert patches == {"a": {DO_NOT_DISRUPT: None}}


def test_deletion_costs_point_the_way_karpenter_consolidates() -> None:
    patches, _ = plan(pods("a", "b", "c"), {"b": 4, "c": 0, "gone": 9},
                      ProtectionParams(enabled=False), ProtectionState(), 0.0, with_costs=True)
    assert {p: patch[DELETION_COST] for p, patch in patches.items()} == {
        "a": "0", "b": str(4 * protection.COST_PER_TASK), "c": "0"}
    # Karpenter's eviction cost is 1 + cost / 2^27: 8 tasks weigh as much as 2 idle pods.
    assert 1 + protection.deletion_cost(8) / 2**27 == 2.0
    assert protection.deletion_cost(10**6) == 2**31 - 1


# -- capacity: pods waiting for nodes --------------------------------------------------------


def pod(phase: str, reason: str | None = None, deleting: bool = False) -> dict[str, Any]:
    conditions = [] if reason is None else [
        {"type": "PodScheduled", "status": "False", "reason": reason}]
    meta: dict[str, Any] = {"name": "p"}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "status": {"phase": phase, "conditions": conditions}}


def test_only_unschedulable_pods_count_as_waiting_for_nodes() -> None:
    found = [pod("Pending", "Unschedulable"), pod("Pending", "SchedulingGated"),
             pod("Pending"), pod("Running"), pod("Pending", "Unschedulable", deleting=True)]
    assert capacity.pending_replicas(found) == 1


def test_capacity_pending_only_when_nothing_else_happens() -> None:
    stable = Decision(4, 4, 4, Reason.STABLE, "fine")
    explained = capacity.explain(stable, 2)
    assert explained.reason is Reason.CAPACITY_PENDING
    assert explained.message.startswith("2 worker pod(s) wait for a node")
    assert capacity.explain(stable, 0) is stable
    up = Decision(2, 4, 4, Reason.SCALE_UP, "more")
    assert capacity.explain(up, 2) is up
    paused = Decision(4, 4, 4, Reason.PAUSED, "paused")
    assert capacity.explain(paused, 2) is paused


# -- budget and scheduling knobs --------------------------------------------------------------


def spec(**worker: Any) -> models.TaskQueueSpec:
    return models.TaskQueueSpec.model_validate(with_change("worker", {**VALID["worker"],
                                                                      **worker}))


def test_no_budget_unless_asked_for() -> None:
    assert budget.render(OWNER, spec()) is None


@pytest.mark.parametrize("max_unavailable", [1, 0, "25%"])
def test_budget_selects_the_worker_pods(max_unavailable: int | str) -> None:
    pdb = budget.render(OWNER, spec(disruptionBudget={"maxUnavailable": max_unavailable}))
    assert pdb is not None
    assert pdb["metadata"]["name"] == "emails-worker"
    assert pdb["metadata"]["ownerReferences"] == [OWNER.reference()]
    assert pdb["spec"]["maxUnavailable"] == max_unavailable
    assert pdb["spec"]["selector"] == {"matchLabels": dep.selector_labels("emails")}


@pytest.mark.parametrize("bad", ["half", "101%", -1, True, "1"])
def test_bad_max_unavailable_is_refused(bad: object) -> None:
    with pytest.raises(ValidationError, match="maxUnavailable"):
        spec(disruptionBudget={"maxUnavailable": bad})


def test_spread_constraints_reach_the_pod_template() -> None:
    constraint = {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                  "whenUnsatisfiable": "ScheduleAnyway",
                  "labelSelector": {"matchLabels": {"corral.dev/taskqueue": "emails"}}}
    body = dep.render(OWNER, spec(topologySpreadConstraints=[constraint],
                                  priorityClassName="batch-low"), 1)
    pod_spec = body["spec"]["template"]["spec"]
    assert pod_spec["topologySpreadConstraints"] == [constraint]
    assert pod_spec["priorityClassName"] == "batch-low"


def test_disruption_defaults() -> None:
    parsed = models.TaskQueueSpec.model_validate(VALID)
    assert parsed.disruption.protect_busy_workers is True
    assert parsed.disruption.idle_seconds == 30
    assert parsed.scaling.max_drain_seconds == 3600
    assert parsed.worker.disruption_budget is None
