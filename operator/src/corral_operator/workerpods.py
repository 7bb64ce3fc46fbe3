"""A TaskQueue's worker pods as node autoscalers see them: which are busy, which
wait for a node, which must not be disrupted, and the PodDisruptionBudget. The
decisions are in the pure modules ``busy``, ``protection``, ``capacity`` and
``budget``; the Kubernetes calls go through ``kube``."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from corral.depths import QueueDepth
from corral_operator import budget, capacity, models, protection
from corral_operator import deployment as dep
from corral_operator.busy import BusyHold, busy_pods, hold_for_busy
from corral_operator.cache import PodCache
from corral_operator.kube import Kube
from corral_operator.policy import Decision

Body = dict[str, Any]


def in_flight_by_worker(depths: Mapping[str, QueueDepth] | None) -> dict[str, int]:
    """Tasks in flight per worker id (= pod name), over all queues."""
    in_flight: dict[str, int] = defaultdict(int)
    for depth in (depths or {}).values():
        for worker in depth.workers:
            in_flight[worker.worker_id] += worker.in_flight
    return dict(in_flight)


@dataclass
class WorkerPods:
    """One TaskQueue's view of its pods, kept between reconciles."""

    kube: Kube
    owner: dep.Owner
    watched: PodCache = field(default_factory=PodCache)
    pods: list[Body] = field(default_factory=list)
    in_flight: dict[str, int] = field(default_factory=dict)
    in_flight_known: bool = False  # False while Redis cannot be read
    _hold: BusyHold = field(default_factory=BusyHold)
    _protection: protection.ProtectionState = field(default_factory=protection.ProtectionState)
    _budget: str | None = None  # JSON of the budget last applied; "" when none exists

    @property
    def live(self) -> list[Body]:
        return [p for p in self.pods if not p["metadata"].get("deletionTimestamp")]

    @property
    def pending(self) -> int:
        return capacity.pending_replicas(self.pods)

    @property
    def busy(self) -> frozenset[str]:
        return busy_pods((p["metadata"]["name"] for p in self.live), self.in_flight)

    async def observe(self, depths: Mapping[str, QueueDepth] | None,
                      replicas: int = -1) -> None:
        """The pods from the watch, listed (raises KubeError) only when the watch shows
        fewer than the Deployment's ``replicas`` (-1: always), and what their workers
        run."""
        watched = self.watched.get(self.owner.namespace, self.owner.name)
        if len(watched) >= replicas >= 0:
            self.pods = watched
        else:
            self.pods = await self.kube.list_pods(self.owner.namespace,
                                                  dep.label_selector(self.owner.name))
        self.in_flight = in_flight_by_worker(depths)
        self.in_flight_known = depths is not None

    def hold(self, decision: Decision, spec: models.TaskQueueSpec, now_s: float,
             metrics_known: bool) -> Decision:
        """Scale-downs stop at the busy pods, within scaling.maxDrainSeconds."""
        if not metrics_known:
            return decision
        decision, self._hold = hold_for_busy(decision, len(self.busy), self._hold, now_s,
                                             float(spec.scaling.max_drain_seconds))
        return capacity.explain(decision, self.pending)

    async def annotate(self, spec: models.TaskQueueSpec, now_s: float,
                       with_costs: bool) -> None:
        """Protection annotations always, deletion costs before a scale-down; one
        patch per pod that needs a change, sent together (raises KubeError). While
        the in-flight counts are unknown (Redis unreachable) nothing changes: a busy
        pod must not lose its protection because Redis is away."""
        if not self.in_flight_known:
            return
        params = protection.ProtectionParams(
            enabled=spec.disruption.protect_busy_workers,
            idle_s=float(spec.disruption.idle_seconds),
            user_keys=frozenset(spec.worker.pod_annotations or ()))
        views = [protection.PodView(p["metadata"]["name"],
                                    p["metadata"].get("annotations") or {}) for p in self.live]
        patches, self._protection = protection.plan(
            views, self.in_flight, params, self._protection, now_s, with_costs)
        await asyncio.gather(*(
            self.kube.annotate_pod(self.owner.namespace, name, patch)
            for name, patch in patches.items()))

    async def reconcile_budget(self, spec: models.TaskQueueSpec) -> None:
        """Apply or delete the PodDisruptionBudget when it changed (raises KubeError)."""
        wanted = budget.render(self.owner, spec)
        text = "" if wanted is None else json.dumps(wanted, sort_keys=True)
        if text == self._budget:
            return
        if wanted is None:
            await self.kube.delete_pod_disruption_budget(
                self.owner.namespace, budget.budget_name(self.owner.name))
        else:
            await self.kube.apply_pod_disruption_budget(wanted)
        self._budget = text
