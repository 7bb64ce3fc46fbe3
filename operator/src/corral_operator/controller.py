"""One TaskQueue's pass: read the queues, decide, reconcile the Deployment, report.
The process's one scheduler (``corral_operator.scheduler``) runs the passes of
every TaskQueue; the kopf daemon in ``handlers`` only adds a TaskQueue to it and
takes it out again. A broken TaskQueue only ever stalls its own passes."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import ValidationError

from corral.depths import QueueDepth
from corral.errors import ConfigError
from corral_operator import deployment as dep
from corral_operator import models
from corral_operator import status as st
from corral_operator.cache import DeploymentCache, PodCache, newer, slim
from corral_operator.kube import Kube, KubeError, NotFound, ObjectRef, now_rfc3339
from corral_operator.metrics import OperatorMetrics
from corral_operator.policy import Decision, Load, PolicyState, ScalingParams, decide
from corral_operator.redis_io import RedisUnavailable, Server, Servers
from corral_operator.scheduler import Prefetched, Scheduler
from corral_operator.shards import WHOLE, Shard, stale_finalizers
from corral_operator.workerpods import WorkerPods

log = logging.getLogger("corral.operator")
Body = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ControllerSettings:
    """Operator-wide knobs of every TaskQueue loop."""

    # Retries after failures back off from pollSeconds up to this.
    max_backoff_s: float = 10.0
    # How often a Redis URL from a Secret is read again.
    secret_refresh_s: float = 60.0
    # Poll interval while the spec is invalid or the TaskQueue is being deleted.
    invalid_spec_retry_s: float = 30.0


@dataclass
class Runtime:
    """What every handler shares: clients, metrics, settings and the live loops."""

    kube: Kube
    metrics: OperatorMetrics
    settings: ControllerSettings = field(default_factory=ControllerSettings)
    servers: Servers = field(default_factory=Servers)
    deployments: DeploymentCache = field(default_factory=DeploymentCache)
    pods: PodCache = field(default_factory=PodCache)
    shard: Shard = WHOLE
    clock: Callable[[], float] = time.monotonic
    controllers: dict[str, TaskQueueController] = field(default_factory=dict)
    scheduler: Scheduler = field(init=False)

    def __post_init__(self) -> None:
        self.scheduler = Scheduler(self.clock)


class StopFlag(Protocol):
    """kopf's ``stopped`` flag of a daemon."""

    def __bool__(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> Awaitable[object]: ...


class _Prefixed(logging.LoggerAdapter[logging.Logger]):
    """Log lines that name their TaskQueue, in text and JSON logs alike."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        extra = dict(self.extra or {})
        kwargs["extra"] = {**extra, **kwargs.get("extra", {})}
        return f"[{extra['taskqueue']}] {msg}", kwargs


@dataclass(slots=True)
class _Observation:
    depths: dict[str, QueueDepth] | None = None
    redis_error: str | None = None
    redis_reason: str = "Connected"
    deployment: Body | None = None
    deployment_problem: tuple[str, str] | None = None


class TaskQueueController:
    def __init__(self, runtime: Runtime, name: str, namespace: str, uid: str) -> None:
        self.runtime = runtime
        self.owner = dep.Owner(name, namespace, uid)
        self.ref = ObjectRef(models.API_VERSION, models.KIND, name, namespace, uid)
        self._log = _Prefixed(log, {"taskqueue": f"{namespace}/{name}"})
        # kopf's live view of the TaskQueue, given when it is scheduled.
        self.body: Mapping[str, Any] = {}
        self._policy: PolicyState | None = None
        self._applied_generation: int | None = None
        self._spec: tuple[int | None, models.TaskQueueSpec] | None = None
        self._invalid_generation: int | None = None
        self._seen_generation: int | None = None
        self._server: Server | None = None
        self._redis_source: models.RedisSpec | None = None
        self._watched: tuple[str, ...] = ()
        # Replicas after the last pass; a wake-up matters only while this is zero.
        self._replicas: int | None = None
        self._url_read_s = float("-inf")
        self._failures = 0
        self._was_reachable: bool | None = None
        self._written_status: Body | None = None
        self._written_deployment: Body | None = None
        # The spec hash of the current spec's Deployment (rendering and hashing it
        # is most of a pass's work; the body itself is rendered again only to be
        # applied), and the metric values last exported.
        self._rendered: tuple[models.TaskQueueSpec, str] | None = None
        self._exported: tuple[Any, ...] | None = None
        self._last_scale_time: str | None = None
        self._pods = WorkerPods(runtime.kube, self.owner, runtime.pods)
        # After a pass that left the TaskQueue idle at zero replicas: the generation,
        # depths and watched Deployment it saw. A pass that sees the same again has
        # nothing to decide, write or export, and ends at once (most TaskQueues of a
        # platform are idle most of the time).
        self._idle: tuple[int | None, dict[str, QueueDepth], Body] | None = None

    @property
    def name(self) -> str:
        return self.owner.name

    @property
    def uid(self) -> str:
        return self.owner.uid

    @property
    def namespace(self) -> str:
        return self.owner.namespace

    # -- as the scheduler sees it ------------------------------------------------------

    async def poll(self, prefetched: Prefetched | None = None) -> float:
        """One pass on ``body``; a bug in it is logged and retried instead of ending
        the TaskQueue's passes."""
        try:
            return await self.reconcile_once(self.body, prefetched)
        except Exception:
            self._count_error("unexpected")
            self._log.exception("reconcile failed unexpectedly; retrying")
            self._failures += 1
            return self.runtime.settings.max_backoff_s

    def planned_read(self) -> tuple[Server, Sequence[str]] | None:
        """The server and queues of the next pass, when the spec it read last is
        still current and its connection does not need a fresh look at a Secret."""
        if self._server is None or self._spec is None or self._redis_source is None:
            return None
        generation, spec = self._spec
        meta = self.body.get("metadata") or {}
        if generation is None or meta.get("generation") != generation \
                or meta.get("deletionTimestamp") or not self._connection_fresh(spec.redis):
            return None
        return self._server, spec.queue_names

    @property
    def acted_on_generation(self) -> int | None:
        return self._seen_generation

    def wake(self) -> None:
        """Reconcile now instead of at the next poll (the spec changed)."""
        self.runtime.scheduler.wake(self.uid)

    def _on_queue_wake(self, queue: str) -> None:
        """Work appeared in an empty queue. Only scaling from zero waits on this: with
        replicas running, the poll scales further (and wake-ups come often). Before
        the first pass is over (None), the subscription's catch-up may come after that
        pass read the queues: a task enqueued in between would wait for the poll."""
        if self._replicas is None or self._replicas == 0:
            self.runtime.scheduler.wake(self.uid)

    @property
    def grid_s(self) -> float:
        spec = self._spec[1] if self._spec is not None else None
        return float(spec.scaling.poll_seconds) if spec is not None else 1.0

    def resume(self, body: Mapping[str, Any]) -> None:
        """Carry on from what the status says (a restarted operator)."""
        self._last_scale_time = (body.get("status") or {}).get("lastScaleTime")

    async def close(self) -> None:
        await self._drop_redis()

    async def reconcile_once(self, body: Mapping[str, Any],
                             prefetched: Prefetched | None = None) -> float:
        """One pass; returns the seconds until the next one. Expected failures (Redis,
        the Kubernetes API, the spec) become a condition, a metric and a retry.
        ``prefetched``: the depths the scheduler read for this pass."""
        started = self.runtime.clock()
        generation = body.get("metadata", {}).get("generation")
        self._seen_generation = generation
        await self._drop_stale_finalizers(body)
        if body.get("metadata", {}).get("deletionTimestamp"):
            return self._idle_at(None)  # going away: touch nothing
        if self._still_idle(generation, prefetched):
            if not await self._ticked_while_idle():
                self.runtime.metrics.poll_duration.labels(self.namespace, self.name).observe(
                    self.runtime.clock() - started)
                assert self._spec is not None  # _still_idle checks the generation parsed
                return float(self._spec[1].scaling.poll_seconds)
            prefetched = None  # a tick was enqueued after the scheduler's read
        try:
            spec = self._parse(body, generation)
        except ValidationError as exc:
            await self._report_invalid(body, generation, _validation_message(exc))
            return self.runtime.settings.invalid_spec_retry_s
        try:
            delay_s = await self._reconcile(body, spec, generation, prefetched)
        except KubeError as exc:
            self._failures += 1
            self._count_error("kubernetes")
            self._log.warning("reconcile failed: %s", exc)
            delay_s = self._backoff_s(spec)
        finally:
            self.runtime.metrics.poll_duration.labels(self.namespace, self.name).observe(
                self.runtime.clock() - started)
        return delay_s

    async def _ticked_while_idle(self) -> bool:
        """An idle TaskQueue's periodic tasks are ticked too; a tick enqueued means the
        pass goes on, with a fresh read."""
        assert self._server is not None and self._spec is not None  # as _still_idle checks
        return await self._tick_schedules(self._server, self._spec[1]) > 0

    def _idle_at(self, idle: tuple[int | None, dict[str, QueueDepth], Body] | None) -> float:
        self._idle = idle
        return self.runtime.settings.invalid_spec_retry_s

    def _still_idle(self, generation: int | None, prefetched: Prefetched | None) -> bool:
        """Nothing changed since a pass that left the TaskQueue idle at zero."""
        if self._idle is None or prefetched is None or prefetched.depths is None \
                or prefetched.error is not None or prefetched.server is not self._server:
            return False
        seen_generation, depths, deployment = self._idle
        if generation != seen_generation or self._spec is None or self._spec[0] != generation:
            return False
        if self.runtime.deployments.get(self.namespace, deployment["metadata"]["name"]) \
                is not deployment or self.runtime.pods.count(self.namespace, self.name):
            return False
        return all(prefetched.depths.get(q) == d for q, d in depths.items())

    def _note_idle(self, generation: int | None, current: int, decision: Decision,
                   seen: _Observation, status_written: bool) -> None:
        cached = self.runtime.deployments.get(self.namespace, dep.deployment_name(self.name))
        idle = (status_written and current == 0 and decision.desired == 0
                and seen.redis_error is None and seen.deployment_problem is None
                and seen.depths is not None and cached is not None and seen.deployment is cached
                and not any(d.backlog or d.in_flight for d in seen.depths.values())
                and not self.runtime.pods.count(self.namespace, self.name))
        self._idle = (generation, seen.depths, cached) if idle and seen.depths is not None \
            and cached is not None else None

    async def _reconcile(
        self, body: Mapping[str, Any], spec: models.TaskQueueSpec, generation: int | None,
        prefetched: Prefetched | None,
    ) -> float:
        seen = _Observation()
        await self._read_queues(spec, seen, prefetched)
        seen.deployment = await self._observe_deployment()
        current = _replicas(seen.deployment)
        pods_known = await self._observe_pods(seen.depths, current)
        decision = self._pods.hold(self._decide(spec, current, seen.depths), spec,
                                   self.runtime.clock(), pods_known and seen.depths is not None)
        scaling_down = decision.desired < current
        if not await self._annotate_pods(spec, pods_known, scaling_down) and scaling_down:
            decision = Decision(current, current, decision.recommended, decision.reason,
                                "holding: could not mark idle pods for deletion first")
        await self._reconcile_budget(spec)
        try:
            seen.deployment = await self._write_deployment(spec, seen.deployment, decision)
        except KubeError as exc:
            self._count_error("deployment")
            self._log.warning("deployment not reconciled: %s", exc)
            seen.deployment_problem = ("DeploymentFailed", str(exc))
            decision = Decision(current, current, decision.recommended, decision.reason,
                                decision.message)
        else:
            await self._announce_scale(decision)
        self._replicas = _replicas(seen.deployment)  # before the status write, which may lag
        written = await self._report(body, generation, spec, decision, seen)
        self._note_idle(generation, current, decision, seen, written)
        self._failures = self._failures + 1 if seen.redis_error else 0
        return self._backoff_s(spec) if seen.redis_error else float(spec.scaling.poll_seconds)

    async def _drop_stale_finalizers(self, body: Mapping[str, Any]) -> None:
        meta = body.get("metadata") or {}
        finalizers = list(meta.get("finalizers") or [])
        stale = stale_finalizers(finalizers, self.runtime.shard.finalizer)
        if not stale:
            return
        keep = [f for f in finalizers if f not in stale]
        try:
            await self.runtime.kube.set_taskqueue_finalizers(
                self.namespace, self.name, keep, str(meta.get("resourceVersion") or ""))
        except KubeError as exc:  # a conflict most likely: tried again next pass
            self._log.warning("finalizers %s of another shard layout not removed: %s",
                              ", ".join(stale), exc)
            return
        self._log.info("removed finalizers of another shard layout: %s", ", ".join(stale))

    # -- spec ----------------------------------------------------------------------------

    def _parse(self, body: Mapping[str, Any], generation: int | None) -> models.TaskQueueSpec:
        if self._spec is not None and self._spec[0] == generation and generation is not None:
            return self._spec[1]
        spec = models.TaskQueueSpec.model_validate(body.get("spec") or {})
        self._spec = (generation, spec)
        return spec

    async def _report_invalid(
        self, body: Mapping[str, Any], generation: int | None, message: str
    ) -> None:
        self._count_error("spec")
        if self._invalid_generation != generation:
            self._invalid_generation = generation
            self._log.warning("%s", message)
            await self._event("Warning", "InvalidSpec", message)
        now = now_rfc3339()
        previous = self._previous_conditions(body)
        conditions = st.merge_conditions(previous, [
            st.ConditionUpdate("Ready", "False", "InvalidSpec", message),
            st.scaling_condition(None, message),
        ], generation, now)
        await self._write_status({"observedGeneration": generation, "conditions": conditions})

    # -- redis ---------------------------------------------------------------------------

    async def _read_queues(self, spec: models.TaskQueueSpec, seen: _Observation,
                           prefetched: Prefetched | None) -> None:
        try:
            server = await self._connection(spec.redis)
            self._watch(server, tuple(spec.queue_names))
            ticked = await self._tick_schedules(server, spec)
            # A tick enqueued since the scheduler's read: that read is out of date.
            seen.depths = None if ticked else _prefetched(prefetched, server, spec.queue_names)
            if seen.depths is None:
                seen.depths = await server.depths(spec.queue_names)
        except NotFound as exc:
            seen.redis_error, seen.redis_reason = str(exc), "SecretNotFound"
        except KubeError as exc:
            seen.redis_error, seen.redis_reason = str(exc), "SecretUnreadable"
        except RedisUnavailable as exc:
            seen.redis_error, seen.redis_reason = str(exc), "ConnectionFailed"
        except ConfigError as exc:  # a URL that names no Redis we can connect to
            seen.redis_error, seen.redis_reason = f"redis: {exc}", "ConnectionFailed"
        if seen.redis_reason == "ConnectionFailed":
            # A URL or CA from a Secret is read again at the next pass: a failing
            # connection is what a rotated password or CA looks like.
            self._url_read_s = float("-inf")
        await self._announce_redis(seen.redis_error)

    async def _tick_schedules(self, server: Server, spec: models.TaskQueueSpec) -> int:
        """Tick the queues' periodic tasks before their depths are read: with no worker
        running, a tick's task is enqueued here and the depth read then scales from
        zero to run it (so scaling to zero never skips a tick). Returns how many
        tasks were enqueued."""
        enqueued = await server.tick_schedules(spec.queue_names)
        if enqueued:
            self._log.info("enqueued %d periodic tasks", enqueued)
        return enqueued

    async def _connection(self, source: models.RedisSpec) -> Server:
        """The shared server for ``source``; a URL or CA from a Secret is read again now
        and then, so a changed Secret (a rotated password or CA, a moved Redis) is
        picked up."""
        now_s = self.runtime.clock()
        if self._server is not None and self._connection_fresh(source):
            return self._server
        url, ca = await self._url(source), await self._ca(source)
        self._url_read_s = now_s
        if self._server is not None and source == self._redis_source \
                and (url, ca) == (self._server.url, self._server.ca):
            return self._server
        await self._drop_redis()
        self._server = self.runtime.servers.acquire(url, ca, source.prefix)
        self._redis_source = source
        return self._server

    def _connection_fresh(self, source: models.RedisSpec) -> bool:
        """The connection of the last pass serves ``source`` without a Secret read."""
        # The spec is parsed once per generation: mostly the very same object.
        if source is not self._redis_source and source != self._redis_source:
            return False
        fresh = self.runtime.clock() - self._url_read_s < self.runtime.settings.secret_refresh_s
        return fresh or (source.url_secret_ref is None and source.ca_secret_ref is None)

    def _watch(self, server: Server, queues: tuple[str, ...]) -> None:
        if queues != self._watched:
            server.unwatch(self._watched, self._on_queue_wake)
            server.watch(queues, self._on_queue_wake)
            self._watched = queues

    async def _url(self, source: models.RedisSpec) -> str:
        if source.url_secret_ref is None:
            assert source.url is not None  # the model requires url or urlSecretRef
            return source.url
        ref = source.url_secret_ref
        return (await self.runtime.kube.read_secret_key(self.namespace, ref.name, ref.key)).strip()

    async def _ca(self, source: models.RedisSpec) -> str | None:
        ref = source.ca_secret_ref
        if ref is None:
            return None
        return await self.runtime.kube.read_secret_key(self.namespace, ref.name, ref.key)

    async def _drop_redis(self) -> None:
        server, self._server, self._redis_source = self._server, None, None
        if server is not None:
            server.unwatch(self._watched, self._on_queue_wake)
            self._watched = ()
            await self.runtime.servers.release(server)

    async def _announce_redis(self, error: str | None) -> None:
        reachable = error is None
        self.runtime.metrics.redis_up.labels(self.namespace, self.name).set(int(reachable))
        if reachable == self._was_reachable:
            return
        if not reachable:
            self._log.warning("redis unreachable, holding replicas: %s", error)
            await self._event("Warning", "RedisUnreachable",
                              f"{error}; holding the replica count until Redis is back")
        elif self._was_reachable is False:
            self._log.info("redis reachable again")
            await self._event("Normal", "RedisReachable", "Redis is reachable again")
        self._was_reachable = reachable

    # -- scaling -------------------------------------------------------------------------

    def _decide(
        self, spec: models.TaskQueueSpec, current: int, depths: Mapping[str, QueueDepth] | None
    ) -> Decision:
        now_s = self.runtime.clock()
        if self._policy is None:
            self._policy = PolicyState.resumed(now_s, current)
        load = None if depths is None else Load(
            backlog=sum(d.backlog for d in depths.values()),
            in_flight=sum(d.in_flight for d in depths.values()),
            limited=sum(d.limited for d in depths.values()))
        decision, self._policy = decide(_params(spec.scaling), self._policy, current, load, now_s)
        return decision

    # -- worker pods and node autoscalers (corral_operator.workerpods) --------------------

    async def _observe_pods(self, depths: Mapping[str, QueueDepth] | None,
                            replicas: int) -> bool:
        try:
            await self._pods.observe(depths, replicas)
        except KubeError as exc:
            self._count_error("pods")
            self._log.warning("could not list worker pods: %s", exc)
            return False
        return True

    async def _annotate_pods(self, spec: models.TaskQueueSpec, pods_known: bool,
                             with_costs: bool) -> bool:
        """Protect busy pods, and before a scale-down mark idle ones to go first.
        False when the pods could not be marked."""
        if not pods_known:
            return False
        try:
            await self._pods.annotate(spec, self.runtime.clock(), with_costs)
        except KubeError as exc:
            self._count_error("deletion_cost")
            self._log.warning("could not annotate worker pods: %s", exc)
            return False
        return True

    async def _reconcile_budget(self, spec: models.TaskQueueSpec) -> None:
        try:
            await self._pods.reconcile_budget(spec)
        except KubeError as exc:
            self._count_error("disruption_budget")
            self._log.warning("pod disruption budget not reconciled: %s", exc)

    async def _observe_deployment(self) -> Body | None:
        """From the watch; from the API server only when the watch has not shown it
        (not created yet, just created, or deleted by someone)."""
        name = dep.deployment_name(self.name)
        cached = self.runtime.deployments.get(self.namespace, name)
        if cached is not None:
            return newer(cached, self._written_deployment)
        return await self.runtime.kube.get_deployment(self.namespace, name)

    async def _write_deployment(
        self, spec: models.TaskQueueSpec, current: Body | None, decision: Decision
    ) -> Body:
        """Apply the rendered Deployment when it is missing, outdated or edited by
        someone else (its generation moved without us); else only patch the replicas."""
        wanted_hash = self._spec_hash(spec)
        name = dep.deployment_name(self.name)
        if current is None:
            self._log.info("creating deployment %s", name)
        drifted = (
            current is None
            or (current["metadata"].get("annotations") or {}).get(dep.SPEC_HASH_ANNOTATION)
            != wanted_hash
            or current["metadata"].get("generation") != self._applied_generation
        )
        if drifted:
            result = await self.runtime.kube.apply_deployment(
                dep.render(self.owner, spec, decision.desired))
        elif decision.changed:
            result = await self.runtime.kube.scale_deployment(
                self.namespace, name, decision.desired)
        else:
            return current  # type: ignore[return-value]  # drifted covers None
        self._applied_generation = result["metadata"].get("generation")
        # What a pass reads of it: the API's answer is ten times bigger.
        self._written_deployment = slim(result)
        return self._written_deployment

    def _spec_hash(self, spec: models.TaskQueueSpec) -> str:
        if self._rendered is None or self._rendered[0] is not spec:
            rendered = dep.render(self.owner, spec, 0)
            self._rendered = (spec, rendered["metadata"]["annotations"][dep.SPEC_HASH_ANNOTATION])
        return self._rendered[1]

    async def _announce_scale(self, decision: Decision) -> None:
        if not decision.changed:
            return
        up = decision.desired > decision.current
        self._last_scale_time = now_rfc3339()
        self.runtime.metrics.scale_decisions.labels(
            self.namespace, self.name, "up" if up else "down").inc()
        message = (f"Scaled {dep.deployment_name(self.name)} from {decision.current} to "
                   f"{decision.desired} replicas ({decision.reason}): {decision.message}")
        self._log.info("%s", message)
        await self._event("Normal", "ScaledUp" if up else "ScaledDown", message)

    # -- reporting -----------------------------------------------------------------------

    async def _report(
        self,
        body: Mapping[str, Any],
        generation: int | None,
        spec: models.TaskQueueSpec,
        decision: Decision,
        seen: _Observation,
    ) -> bool:
        """Export the metrics and write the status; False when the write failed."""
        replicas = _replicas(seen.deployment)
        ready = int(((seen.deployment or {}).get("status") or {}).get("readyReplicas") or 0)
        status: Body = {
            "queues": dep.queues_arg(spec),
            "replicas": replicas,
            "readyReplicas": ready,
            "desiredReplicas": decision.desired,
            "pendingReplicas": self._pods.pending,
            "observedGeneration": generation,
        }
        if seen.depths is not None:
            status["backlog"] = sum(d.backlog for d in seen.depths.values())
            status["inFlight"] = sum(d.in_flight for d in seen.depths.values())
            status["limited"] = sum(d.limited for d in seen.depths.values())
        if self._last_scale_time:
            status["lastScaleTime"] = self._last_scale_time
        previous = self._previous_conditions(body)
        status["conditions"] = st.merge_conditions(previous, [
            st.ready_condition(decision.desired, ready, seen.deployment_problem),
            st.redis_condition(seen.redis_error, seen.redis_reason, len(spec.queues)),
            st.scaling_condition(decision),
        ], generation, now_rfc3339())
        self._export(status, spec.scaling, seen.depths)
        return await self._write_status(status)

    def _previous_conditions(self, body: Mapping[str, Any]) -> list[Body]:
        # Our last write is fresher than the watched body, which may lag behind it.
        source = self._written_status or body.get("status") or {}
        return list(source.get("conditions") or [])

    def _export(
        self, status: Body, scaling: models.ScalingSpec, depths: Mapping[str, QueueDepth] | None
    ) -> None:
        dead = None if depths is None else {q: d.dead for q, d in depths.items()}
        values = (status["desiredReplicas"], status["replicas"], status["readyReplicas"],
                  scaling.min_replicas, scaling.max_replicas, status.get("backlog"),
                  status.get("inFlight"), dead)
        if values == self._exported:
            return
        self._exported = values
        m, labels = self.runtime.metrics, (self.namespace, self.name)
        m.desired_replicas.labels(*labels).set(status["desiredReplicas"])
        m.current_replicas.labels(*labels).set(status["replicas"])
        m.ready_replicas.labels(*labels).set(status["readyReplicas"])
        m.min_replicas.labels(*labels).set(scaling.min_replicas)
        m.max_replicas.labels(*labels).set(scaling.max_replicas)
        if depths is not None:
            m.backlog.labels(*labels).set(status["backlog"])
            m.in_flight.labels(*labels).set(status["inFlight"])
            m.set_dead_letter(*labels, dead or {})

    async def _write_status(self, status: Body) -> bool:
        if status == self._written_status:
            return True
        try:
            await self.runtime.kube.patch_taskqueue_status(self.namespace, self.name, status)
        except NotFound:
            return False  # deleted meanwhile; the daemon is about to stop
        except KubeError as exc:
            self._count_error("status")
            self._log.warning("status not written: %s", exc)
            return False
        self._written_status = status
        return True

    async def _event(self, kind: str, reason: str, message: str) -> None:
        try:
            await self.runtime.kube.post_event(
                self.ref, "Warning" if kind == "Warning" else "Normal", reason, message)
        except KubeError as exc:
            self._count_error("event")
            self._log.warning("event %s not posted: %s", reason, exc)

    def _count_error(self, stage: str) -> None:
        self.runtime.metrics.reconcile_errors.labels(self.namespace, self.name, stage).inc()

    def _backoff_s(self, spec: models.TaskQueueSpec) -> float:
        poll_s = float(spec.scaling.poll_seconds)
        ceiling_s = max(poll_s, self.runtime.settings.max_backoff_s)
        return float(min(poll_s * 2 ** min(self._failures, 10), ceiling_s))


def _params(scaling: models.ScalingSpec) -> ScalingParams:
    return ScalingParams(
        min_replicas=scaling.min_replicas,
        max_replicas=scaling.max_replicas,
        target_per_replica=scaling.target_backlog_per_replica,
        activation_backlog=scaling.activation_backlog,
        stabilization_s=float(scaling.scale_down_stabilization_seconds),
        cooldown_s=float(scaling.cooldown_seconds),
        paused=scaling.paused,
    )


def _prefetched(prefetched: Prefetched | None, server: Server,
                queues: Sequence[str]) -> dict[str, QueueDepth] | None:
    """The depths the scheduler read for this pass, if it read them from this server
    (the connection may have changed since); raises what the read raised."""
    if prefetched is None or prefetched.server is not server:
        return None
    if prefetched.error is not None:
        raise prefetched.error
    if prefetched.depths is None or any(q not in prefetched.depths for q in queues):
        return None
    return {q: prefetched.depths[q] for q in queues}


def _replicas(deployment: Body | None) -> int:
    if deployment is None:
        return 0
    return int((deployment.get("spec") or {}).get("replicas") or 0)


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error["loc"])
        parts.append(f"spec.{where}: {error['msg']}" if where else error["msg"])
    return "invalid spec: " + "; ".join(parts)


async def run_taskqueue(runtime: Runtime, body: Mapping[str, Any], stopped: StopFlag) -> None:
    """The TaskQueue in the scheduler, for as long as its daemon runs."""
    meta = body["metadata"]
    loop = TaskQueueController(runtime, meta["name"], meta["namespace"], meta["uid"])
    loop.body = body
    loop.resume(body)
    runtime.controllers[meta["uid"]] = loop
    runtime.scheduler.add(loop)
    try:
        await stopped.wait()
    finally:
        await runtime.scheduler.remove(meta["uid"])
        await loop.close()
        runtime.controllers.pop(meta["uid"], None)
        runtime.metrics.forget(meta["namespace"], meta["name"])


def _loop_of(runtime: Runtime, body: Mapping[str, Any]) -> TaskQueueController | None:
    return runtime.controllers.get((body.get("metadata") or {}).get("uid", ""))


def spec_changed(runtime: Runtime, body: Mapping[str, Any]) -> bool:
    """True when the TaskQueue's loop has not yet acted on this spec generation."""
    loop = _loop_of(runtime, body)
    generation = (body.get("metadata") or {}).get("generation")
    return loop is not None and loop.acted_on_generation != generation


def wake(runtime: Runtime, body: Mapping[str, Any]) -> None:
    loop = _loop_of(runtime, body)
    if loop is not None:
        loop.wake()
