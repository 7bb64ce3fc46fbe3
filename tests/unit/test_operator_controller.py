"""The per-TaskQueue control loop against a real Redis and a fake of our own
Kubernetes seam (``corral_operator.kube.Kube``)."""

from __future__ import annotations

import asyncio
import base64
import copy
import time
from typing import Any

import pytest
import redis.asyncio

from corral.client import Client
from corral.keys import DEFAULT_PREFIX, queue_keys
from corral_operator import controller as ctl
from corral_operator import deployment as dep
from corral_operator import protection
from corral_operator.kube import KubeError, NotFound, ObjectRef
from corral_operator.metrics import OperatorMetrics
from corral_operator.redis_io import RedisSettings, Servers
from tests.unit.test_operator_models import VALID

NS, NAME, UID = "shop", "emails", "uid-1"


class FakeKube:
    """In-memory stand-in for ``Kube``: one Deployment, its pods, secrets, events."""

    def __init__(self) -> None:
        self.deployments: dict[str, dict[str, Any]] = {}
        self.pods: dict[str, dict[str, Any]] = {}
        self.secrets: dict[tuple[str, str], dict[str, str]] = {}
        self.status: dict[str, Any] = {}
        self.events: list[tuple[str, str, str]] = []
        self.calls: list[str] = []
        self.fail_deployment_writes = False
        self.budgets: dict[str, dict[str, Any]] = {}

    # deployments
    async def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append("get")
        found = self.deployments.get(name)
        return copy.deepcopy(found) if found else None

    async def apply_deployment(self, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(f"apply:{body['spec']['replicas']}")
        if self.fail_deployment_writes:
            raise KubeError("apply refused: 403 Forbidden", 403)
        name = body["metadata"]["name"]
        old = self.deployments.get(name)
        stored = copy.deepcopy(body)
        generation = (old or {}).get("metadata", {}).get("generation", 0)
        if old is None or _without_status(old) != _without_generation(stored, old):
            generation += 1
        stored["metadata"]["generation"] = generation
        stored["status"] = (old or {}).get("status", {})
        self.deployments[name] = stored
        return copy.deepcopy(stored)

    async def scale_deployment(self, namespace: str, name: str, replicas: int) -> dict[str, Any]:
        self.calls.append(f"scale:{replicas}")
        if self.fail_deployment_writes:
            raise KubeError("scale refused: 403 Forbidden", 403)
        d = self.deployments[name]
        if d["spec"]["replicas"] != replicas:
            d["spec"]["replicas"] = replicas
            d["metadata"]["generation"] += 1
        return copy.deepcopy(d)

    def edit(self, name: str, change: dict[str, Any]) -> None:
        """Someone else edits the Deployment (generation moves)."""
        d = self.deployments[name]
        d["spec"]["template"]["spec"].update(change)
        d["metadata"]["generation"] += 1

    def set_ready(self, name: str, ready: int) -> None:
        self.deployments[name]["status"] = {"readyReplicas": ready}

    # pods
    async def list_pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        self.calls.append("list_pods")
        return copy.deepcopy(list(self.pods.values()))

    async def annotate_pod(self, namespace: str, name: str,
                           annotations: dict[str, str | None]) -> None:
        self.calls.append(f"annotate:{name}")
        current = self.pods[name]["metadata"].setdefault("annotations", {})
        for key, value in annotations.items():
            if value is None:
                current.pop(key, None)
            else:
                current[key] = value

    def add_pods(self, *names: str, phase: str = "Running") -> None:
        for name in names:
            self.pods[name] = {"metadata": {"name": name, "annotations": {}},
                               "status": {"phase": phase}}

    def add_unschedulable_pods(self, *names: str) -> None:
        for name in names:
            self.pods[name] = {"metadata": {"name": name, "annotations": {}}, "status": {
                "phase": "Pending",
                "conditions": [{"type": "PodScheduled", "status": "False",
                                "reason": "Unschedulable"}]}}

    def annotations(self, pod: str) -> dict[str, str]:
        return dict(self.pods[pod]["metadata"]["annotations"])

    # pod disruption budgets
    async def apply_pod_disruption_budget(self, body: dict[str, Any]) -> None:
        self.calls.append("apply_pdb")
        self.budgets[body["metadata"]["name"]] = copy.deepcopy(body)

    async def delete_pod_disruption_budget(self, namespace: str, name: str) -> None:
        self.calls.append("delete_pdb")
        self.budgets.pop(name, None)

    def cost(self, pod: str) -> str | None:
        return self.pods[pod]["metadata"]["annotations"].get(dep.DELETION_COST_ANNOTATION)

    # secrets, status, events
    async def read_secret_key(self, namespace: str, name: str, key: str) -> str:
        data = self.secrets.get((namespace, name))
        if data is None or key not in data:
            raise NotFound(f"secret {namespace}/{name} not found", 404)
        return base64.b64decode(base64.b64encode(data[key].encode())).decode()

    async def patch_taskqueue_status(self, namespace: str, name: str,
                                     status: dict[str, Any]) -> None:
        self.calls.append("status")
        self.status = {**self.status, **copy.deepcopy(status)}

    async def set_taskqueue_finalizers(self, namespace: str, name: str, finalizers: list[str],
                                       resource_version: str) -> None:
        self.calls.append(f"finalizers:{','.join(finalizers)}@{resource_version}")

    async def post_event(self, ref: ObjectRef, kind: str, reason: str, message: str) -> None:
        self.events.append((kind, reason, message))

    def reasons(self) -> list[str]:
        return [reason for _, reason, _ in self.events]

    def condition(self, kind: str) -> dict[str, Any]:
        return next(c for c in self.status["conditions"] if c["type"] == kind)


def _without_status(d: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in d.items() if k != "status"}
    out["metadata"] = {k: v for k, v in d["metadata"].items() if k != "generation"}
    return out


def _without_generation(new: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    return _without_status({**new, "status": old.get("status")})


class Clock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s

    def advance(self, seconds: float) -> None:
        self.now_s += seconds


def body(spec: dict[str, Any], generation: int = 1, status: dict[str, Any] | None = None
         ) -> dict[str, Any]:
    return {"metadata": {"name": NAME, "namespace": NS, "uid": UID, "generation": generation},
            "spec": spec, "status": status or {}}


def spec_for(url: str, **scaling: Any) -> dict[str, Any]:
    return {**copy.deepcopy(VALID), "redis": {"url": url},
            "queues": [{"name": "q1"}, {"name": "q2", "weight": 3}],
            "scaling": {"targetBacklogPerReplica": 10, "maxReplicas": 8,
                        "scaleDownStabilizationSeconds": 0, "cooldownSeconds": 30,
                        "pollSeconds": 2, **scaling}}


@pytest.fixture
def kube() -> FakeKube:
    return FakeKube()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def runtime(kube: FakeKube, clock: Clock) -> ctl.Runtime:
    settings = ctl.ControllerSettings(max_backoff_s=10.0)
    return ctl.Runtime(kube=kube, metrics=OperatorMetrics(), settings=settings,  # type: ignore[arg-type]
                       servers=Servers(RedisSettings(timeout_s=2.0)), clock=clock)


@pytest.fixture
async def loop(runtime: ctl.Runtime) -> Any:
    c = ctl.TaskQueueController(runtime, NAME, NS, UID)
    yield c
    await c.close()
    await runtime.servers.close()


async def enqueue(client: Client, queue: str, n: int) -> None:
    await client.enqueue_many([{"name": "noop", "queue": queue} for _ in range(n)])


async def register_worker(conn: redis.asyncio.Redis, queue: str, worker_id: str,
                          in_flight: int) -> None:
    keys = queue_keys(queue, DEFAULT_PREFIX)
    await conn.zadd(keys.workers, {worker_id: int(time.time() * 1000) + 60_000})
    await conn.hset(keys.worker(worker_id), mapping={"in_flight": in_flight, "running": in_flight,
                                                     "concurrency": 10, "queues": queue})


# -- tests ------------------------------------------------------------------------------


async def test_first_pass_creates_the_deployment_and_reports(
        loop: ctl.TaskQueueController, kube: FakeKube, redis_url: str) -> None:
    delay_s = await loop.reconcile_once(body(spec_for(redis_url)))
    assert delay_s == 2.0
    d = kube.deployments["emails-worker"]
    assert d["spec"]["replicas"] == 0
    assert d["metadata"]["ownerReferences"][0]["uid"] == UID
    assert kube.status["queues"] == "q1=1,q2=3"
    assert (kube.status["backlog"], kube.status["inFlight"]) == (0, 0)
    assert kube.status["observedGeneration"] == 1
    assert kube.condition("Ready")["reason"] == "ScaledToZero"
    assert kube.condition("RedisReachable")["status"] == "True"
    assert kube.condition("Scaling")["status"] == "True"
    assert kube.events == []


async def test_backlog_scales_up_with_an_event(
        loop: ctl.TaskQueueController, kube: FakeKube, client: Client, redis_url: str) -> None:
    spec = spec_for(redis_url)
    await loop.reconcile_once(body(spec))
    await enqueue(client, "q1", 35)
    await enqueue(client, "q2", 20)
    await loop.reconcile_once(body(spec))
    assert kube.deployments["emails-worker"]["spec"]["replicas"] == 6
    assert kube.calls[-2:] == ["scale:6", "status"]
    kind, reason, message = kube.events[-1]
    assert (kind, reason) == ("Normal", "ScaledUp")
    assert "from 0 to 6 replicas" in message and "backlog 55" in message
    assert kube.status["desiredReplicas"] == 6
    assert kube.status["backlog"] == 55
    assert kube.status["lastScaleTime"]
    assert kube.condition("Ready") == {**kube.condition("Ready"), "status": "False",
                                       "reason": "WorkersNotReady"}
    kube.set_ready("emails-worker", 6)
    await loop.reconcile_once(body(spec))
    assert kube.condition("Ready")["reason"] == "WorkersReady"


async def test_scale_down_marks_idle_pods_first(
        loop: ctl.TaskQueueController, kube: FakeKube, client: Client,
        redis_conn: redis.asyncio.Redis, redis_url: str, clock: Clock) -> None:
    spec = spec_for(redis_url)
    await enqueue(client, "q1", 40)
    await loop.reconcile_once(body(spec))
    assert kube.deployments["emails-worker"]["spec"]["replicas"] == 4
    kube.add_pods("w-a", "w-b", "w-c", "w-d")
    await redis_conn.delete(*queue_keys("q1", DEFAULT_PREFIX).ready)
    await register_worker(redis_conn, "q1", "w-b", 3)
    await register_worker(redis_conn, "q2", "w-b", 2)
    await register_worker(redis_conn, "q1", "w-c", 0)
    await redis_conn.zadd(queue_keys("q1", DEFAULT_PREFIX).leased, {f"t{i}": 1 for i in range(5)})
    kube.calls.clear()
    clock.advance(2)
    await loop.reconcile_once(body(spec))
    # 5 in flight -> 1 replica; the costs are set before the replicas drop.
    assert kube.calls.index("list_pods") < kube.calls.index("scale:1")
    assert {p: kube.cost(p) for p in kube.pods} == {
        "w-a": "0", "w-b": str(5 * protection.COST_PER_TASK), "w-c": "0", "w-d": "0"}
    assert kube.reasons()[-1] == "ScaledDown"
    # Unchanged costs are not patched again.
    kube.calls.clear()
    await loop.reconcile_once(body(spec))
    assert not [c for c in kube.calls if c.startswith("annotate")]


async def test_redis_down_holds_replicas_and_backs_off(
        runtime: ctl.Runtime, kube: FakeKube, client: Client, redis_url: str,
        clock: Clock) -> None:
    good = spec_for(redis_url)
    loop = ctl.TaskQueueController(runtime, NAME, NS, UID)
    await enqueue(client, "q1", 30)
    await loop.reconcile_once(body(good))
    assert kube.deployments["emails-worker"]["spec"]["replicas"] == 3
    # Same TaskQueue, Redis now unreachable (nothing listens on port 1).
    bad = spec_for("redis://127.0.0.1:1/0", cooldownSeconds=0)
    delays = []
    for _ in range(5):
        clock.advance(100)
        delays.append(await loop.reconcile_once(body(bad, generation=2)))
    assert kube.deployments["emails-worker"]["spec"]["replicas"] == 3
    assert delays == [4.0, 8.0, 10.0, 10.0, 10.0]
    redis_cond = kube.condition("RedisReachable")
    assert (redis_cond["status"], redis_cond["reason"]) == ("False", "ConnectionFailed")
    assert "redis" in redis_cond["message"]
    assert kube.condition("Scaling")["reason"] == "MetricsUnavailable"
    assert kube.reasons().count("RedisUnreachable") == 1
    assert kube.events[-1][0] == "Warning"
    assert runtime.metrics.redis_up.labels(NS, NAME)._value.get() == 0
    # Back again: reachable, one recovery event, normal polling.
    assert await loop.reconcile_once(body(good, generation=3)) == 2.0
    assert kube.condition("RedisReachable")["status"] == "True"
    assert kube.reasons().count("RedisReachable") == 1
    await loop.close()


async def test_url_from_secret(loop: ctl.TaskQueueController, kube: FakeKube,
                               redis_url: str) -> None:
    spec = spec_for(redis_url)
    spec["redis"] = {"urlSecretRef": {"name": "redis-auth", "key": "url"}}
    await loop.reconcile_once(body(spec))
    cond = kube.condition("RedisReachable")
    assert (cond["status"], cond["reason"]) == ("False", "SecretNotFound")
    kube.secrets[(NS, "redis-auth")] = {"url": redis_url + "\n"}
    await loop.reconcile_once(body(spec))
    assert kube.condition("RedisReachable")["status"] == "True"
    env = kube.deployments["emails-worker"]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "CORRAL_REDIS_URL",
            "valueFrom": {"secretKeyRef": {"name": "redis-auth", "key": "url"}}} in env


async def test_a_secret_that_is_no_url_is_not_shown_in_the_status(
        loop: ctl.TaskQueueController, kube: FakeKube, redis_url: str) -> None:
    spec = spec_for(redis_url)
    spec["redis"] = {"urlSecretRef": {"name": "payroll", "key": "password"}}
    kube.secrets[(NS, "payroll")] = {"password": "hunter2"}
    await loop.reconcile_once(body(spec))
    condition = kube.condition("RedisReachable")
    assert condition["reason"] == "ConnectionFailed"
    assert "not a Redis URL" in condition["message"]
    assert not [e for e in kube.events if "hunter2" in e[2]]
    assert "hunter2" not in str(kube.status)


async def test_invalid_spec_is_reported_once(loop: ctl.TaskQueueController,
                                             kube: FakeKube, redis_url: str) -> None:
    spec = spec_for(redis_url)
    spec["queues"] = [{"name": "a"}, {"name": "a"}]
    for _ in range(3):
        assert await loop.reconcile_once(body(spec, generation=4)) == 30.0
    assert kube.reasons() == ["InvalidSpec"]
    ready = kube.condition("Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert "queue names must be unique" in ready["message"]
    assert "emails-worker" not in kube.deployments


async def test_manual_edits_are_reverted(loop: ctl.TaskQueueController, kube: FakeKube,
                                         redis_url: str) -> None:
    spec = spec_for(redis_url, minReplicas=2)
    await loop.reconcile_once(body(spec))
    await loop.reconcile_once(body(spec))  # the Scaling reason moves from ScaleUp to Stable
    original = copy.deepcopy(kube.deployments["emails-worker"]["spec"]["template"])
    kube.calls.clear()
    await loop.reconcile_once(body(spec))
    assert kube.calls == ["get", "list_pods"]  # nothing to do: reads only, no write
    kube.edit("emails-worker", {"serviceAccountName": "hijacked"})
    await loop.reconcile_once(body(spec))
    assert kube.deployments["emails-worker"]["spec"]["template"] == original
    assert kube.deployments["emails-worker"]["spec"]["replicas"] == 2


async def test_spec_changes_roll_out(loop: ctl.TaskQueueController, kube: FakeKube,
                                     redis_url: str) -> None:
    spec = spec_for(redis_url, minReplicas=1)
    await loop.reconcile_once(body(spec))
    spec["worker"] = {**spec["worker"], "image": "example.invalid/app:2"}
    await loop.reconcile_once(body(spec, generation=2))
    container = kube.deployments["emails-worker"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "example.invalid/app:2"
    assert kube.deployments["emails-worker"]["spec"]["replicas"] == 1
    assert kube.status["observedGeneration"] == 2


async def test_deployment_errors_become_conditions(loop: ctl.TaskQueueController,
                                                   kube: FakeKube, redis_url: str) -> None:
    kube.fail_deployment_writes = True
    await loop.reconcile_once(body(spec_for(redis_url)))
    ready = kube.condition("Ready")
    assert (ready["status"], ready["reason"]) == ("False", "DeploymentFailed")
    assert "403" in ready["message"]


async def test_paused_holds(loop: ctl.TaskQueueController, kube: FakeKube, client: Client,
                            redis_url: str) -> None:
    await enqueue(client, "q1", 50)
    await loop.reconcile_once(body(spec_for(redis_url, paused=True)))
    assert kube.deployments["emails-worker"]["spec"]["replicas"] == 0
    scaling = kube.condition("Scaling")
    assert (scaling["status"], scaling["reason"]) == ("False", "Paused")


async def test_unchanged_status_is_not_written_again(loop: ctl.TaskQueueController,
                                                     kube: FakeKube, redis_url: str) -> None:
    spec = spec_for(redis_url)
    await loop.reconcile_once(body(spec))
    status = copy.deepcopy(kube.status)
    kube.calls.clear()
    await loop.reconcile_once(body(spec, status=status))
    assert "status" not in kube.calls


async def test_condition_transition_times_only_move_on_flips() -> None:
    from corral_operator import status as st
    before = st.merge_conditions([], [st.ConditionUpdate("Ready", "True", "A", "x")], 1, "t1")
    same = st.merge_conditions(before, [st.ConditionUpdate("Ready", "True", "B", "y")], 2, "t2")
    flipped = st.merge_conditions(same, [st.ConditionUpdate("Ready", "False", "C", "z")], 3, "t3")
    assert [c["lastTransitionTime"] for c in (*before, *same, *flipped)] == ["t1", "t1", "t3"]
    assert same[0]["reason"] == "B"


class Flag:
    """kopf's ``stopped`` flag of a daemon."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    def __bool__(self) -> bool:
        return self.event.is_set()

    async def wait(self, timeout: float | None = None) -> None:
        await self.event.wait()


async def until(check: Any, what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def test_run_loop_stops_on_the_flag_and_wakes_on_spec_change(
        runtime: ctl.Runtime, kube: FakeKube, redis_url: str) -> None:
    live = body(spec_for(redis_url, pollSeconds=300))
    flag = Flag()
    task = asyncio.create_task(ctl.run_taskqueue(runtime, live, flag))
    for _ in range(100):
        if "emails-worker" in kube.deployments:
            break
        await asyncio.sleep(0.02)
    assert UID in runtime.controllers
    assert not ctl.spec_changed(runtime, live)
    live["metadata"]["generation"] = 2
    live["spec"]["scaling"]["minReplicas"] = 3
    assert ctl.spec_changed(runtime, live)
    ctl.wake(runtime, live)
    for _ in range(100):
        if kube.deployments["emails-worker"]["spec"]["replicas"] == 3:
            break
        await asyncio.sleep(0.02)
    assert kube.deployments["emails-worker"]["spec"]["replicas"] == 3
    flag.event.set()
    await asyncio.wait_for(task, 5)
    assert UID not in runtime.controllers


async def test_a_taskqueue_being_deleted_is_left_alone(
        loop: ctl.TaskQueueController, kube: FakeKube, redis_url: str) -> None:
    going = body(spec_for(redis_url))
    going["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    await loop.reconcile_once(going)
    assert kube.calls == []


async def test_metrics_per_taskqueue(loop: ctl.TaskQueueController, runtime: ctl.Runtime,
                                     client: Client, redis_conn: redis.asyncio.Redis,
                                     redis_url: str) -> None:
    await enqueue(client, "q1", 25)
    await redis_conn.zadd(queue_keys("q2", DEFAULT_PREFIX).dead, {"dead-1": 1, "dead-2": 2})
    await loop.reconcile_once(body(spec_for(redis_url)))
    text = runtime.metrics.render().decode()
    labels = f'namespace="{NS}",taskqueue="{NAME}"'
    for line in (f"corral_operator_desired_replicas{{{labels}}} 3.0",
                 f"corral_operator_backlog{{{labels}}} 25.0",
                 f"corral_operator_max_replicas{{{labels}}} 8.0",
                 f'corral_operator_dead_letter{{namespace="{NS}",queue="q2",'
                 f'taskqueue="{NAME}"}} 2.0',
                 f'corral_operator_scale_decisions_total{{direction="up",{labels}}} 1.0'):
        assert line in text, line
    runtime.metrics.forget(NS, NAME)
    text = runtime.metrics.render().decode()
    assert f"corral_operator_desired_replicas{{{labels}}}" not in text
    assert "corral_operator_dead_letter{" not in text


async def test_a_rotated_secret_is_picked_up(loop: ctl.TaskQueueController, kube: FakeKube,
                                             client: Client, redis_url: str,
                                             clock: Clock) -> None:
    spec = spec_for(redis_url)
    spec["redis"] = {"urlSecretRef": {"name": "redis-auth", "key": "url"}}
    kube.secrets[(NS, "redis-auth")] = {"url": redis_url}
    await enqueue(client, "q1", 30)
    await loop.reconcile_once(body(spec))
    assert kube.status["backlog"] == 30
    kube.secrets[(NS, "redis-auth")] = {"url": redis_url.removesuffix("/0") + "/1"}
    clock.advance(10)
    await loop.reconcile_once(body(spec))
    assert kube.status["backlog"] == 30  # read again only after secret_refresh_s
    clock.advance(60)
    await loop.reconcile_once(body(spec))
    assert kube.status["backlog"] == 0  # database 1 is empty


async def test_an_unexpected_error_does_not_end_the_loop(
        loop: ctl.TaskQueueController, kube: FakeKube, runtime: ctl.Runtime,
        redis_url: str) -> None:
    async def broken(namespace: str, name: str) -> None:
        raise RuntimeError("surprise")

    kube.get_deployment = broken  # type: ignore[method-assign,assignment]
    loop.body = body(spec_for(redis_url))
    assert await loop.poll() == 10.0
    text = runtime.metrics.render().decode()
    assert 'stage="unexpected"' in text


# -- busy pods and node autoscalers -------------------------------------------------------


async def busy_scene(loop: ctl.TaskQueueController, kube: FakeKube, client: Client,
                     redis_conn: redis.asyncio.Redis, spec: dict[str, Any]) -> None:
    """Four pods, three of them running one task each, nothing waiting."""
    await enqueue(client, "q1", 40)
    await loop.reconcile_once(body(spec))
    assert kube.deployments["emails-worker"]["spec"]["replicas"] == 4
    kube.add_pods("w-a", "w-b", "w-c", "w-d")
    await redis_conn.delete(*queue_keys("q1", DEFAULT_PREFIX).ready)
    for worker in ("w-a", "w-b", "w-c"):
        await register_worker(redis_conn, "q1", worker, 1)
    await redis_conn.zadd(queue_keys("q1", DEFAULT_PREFIX).leased, {f"t{i}": 1 for i in range(3)})


async def test_scale_down_stops_at_the_busy_pods(
        loop: ctl.TaskQueueController, kube: FakeKube, client: Client,
        redis_conn: redis.asyncio.Redis, redis_url: str, clock: Clock) -> None:
    spec = spec_for(redis_url, maxDrainSeconds=60)
    await busy_scene(loop, kube, client, redis_conn, spec)
    clock.advance(2)
    # 3 in flight / 10 per replica = 1 wanted, but three pods are busy: 4 -> 3.
    await loop.reconcile_once(body(spec))
    assert kube.deployments["emails-worker"]["spec"]["replicas"] == 3
    assert kube.cost("w-d") == "0"  # the idle pod is the one the ReplicaSet removes
    assert "waiting for 3 busy pod(s)" in kube.condition("Scaling")["message"]
    kube.pods.pop("w-d")
    clock.advance(2)
    await loop.reconcile_once(body(spec))
    assert kube.deployments["emails-worker"]["spec"]["replicas"] == 3
    scaling = kube.condition("Scaling")
    assert scaling["reason"] == "WaitingForBusyPods"
    assert "waiting for 3 busy pod(s) to finish (2s of maxDrainSeconds 60)" in scaling["message"]
    # One pod's task ends: that pod may go.
    await register_worker(redis_conn, "q1", "w-c", 0)
    await redis_conn.zrem(queue_keys("q1", DEFAULT_PREFIX).leased, "t2")
    clock.advance(2)
    await loop.reconcile_once(body(spec))
    assert kube.deployments["emails-worker"]["spec"]["replicas"] == 2
    assert kube.cost("w-c") == "0" and kube.cost("w-a") != "0"
    # Past maxDrainSeconds the policy's count applies.
    clock.advance(60)
    await loop.reconcile_once(body(spec))
    assert kube.deployments["emails-worker"]["spec"]["replicas"] == 1
    assert "scaling down anyway" in kube.events[-1][2]


async def test_busy_pods_carry_do_not_disrupt_until_idle_long_enough(
        loop: ctl.TaskQueueController, kube: FakeKube, client: Client,
        redis_conn: redis.asyncio.Redis, redis_url: str, clock: Clock) -> None:
    spec = {**spec_for(redis_url), "disruption": {"idleSeconds": 10}}
    await busy_scene(loop, kube, client, redis_conn, spec)
    clock.advance(2)
    await loop.reconcile_once(body(spec))
    for pod in ("w-a", "w-b", "w-c"):
        assert protection.protected(kube.annotations(pod)), kube.annotations(pod)
    assert not protection.protected(kube.annotations("w-d"))
    assert protection.DO_NOT_DISRUPT not in kube.annotations("w-d")
    # Nothing changed: nothing is sent.
    kube.calls.clear()
    clock.advance(2)
    await loop.reconcile_once(body(spec))
    assert not [c for c in kube.calls if c.startswith("annotate")]
    # w-a goes idle: protected for idleSeconds more, then released in one patch.
    await register_worker(redis_conn, "q1", "w-a", 0)
    clock.advance(9)
    await loop.reconcile_once(body(spec))
    assert protection.protected(kube.annotations("w-a"))
    kube.calls.clear()
    clock.advance(2)
    await loop.reconcile_once(body(spec))
    assert [c for c in kube.calls if c.startswith("annotate")] == ["annotate:w-a"]
    assert protection.SAFE_TO_EVICT not in kube.annotations("w-a")
    assert protection.protected(kube.annotations("w-b"))


async def test_protection_switched_off_removes_the_annotations(
        loop: ctl.TaskQueueController, kube: FakeKube, client: Client,
        redis_conn: redis.asyncio.Redis, redis_url: str, clock: Clock) -> None:
    spec = spec_for(redis_url)
    await busy_scene(loop, kube, client, redis_conn, spec)
    clock.advance(2)
    await loop.reconcile_once(body(spec))
    assert protection.protected(kube.annotations("w-a"))
    off = {**spec, "disruption": {"protectBusyWorkers": False}}
    clock.advance(2)
    await loop.reconcile_once(body(off, generation=2))
    assert not any(protection.DO_NOT_DISRUPT in kube.annotations(p) for p in kube.pods)


async def test_pods_waiting_for_nodes_are_reported(
        loop: ctl.TaskQueueController, kube: FakeKube, client: Client, redis_url: str,
        clock: Clock) -> None:
    spec = spec_for(redis_url)
    await enqueue(client, "q1", 30)
    await loop.reconcile_once(body(spec))
    kube.add_pods("w-a")
    kube.add_unschedulable_pods("w-b", "w-c")
    clock.advance(2)
    await loop.reconcile_once(body(spec))
    assert kube.status["pendingReplicas"] == 2
    scaling = kube.condition("Scaling")
    assert (scaling["status"], scaling["reason"]) == ("True", "CapacityPending")
    assert "2 worker pod(s) wait for a node" in scaling["message"]
    for pod in ("w-b", "w-c"):
        kube.pods[pod] = {"metadata": {"name": pod, "annotations": {}},
                          "status": {"phase": "Running"}}
    clock.advance(2)
    await loop.reconcile_once(body(spec))
    assert kube.status["pendingReplicas"] == 0
    assert kube.condition("Scaling")["reason"] == "Stable"


async def test_disruption_budget_follows_the_spec(
        loop: ctl.TaskQueueController, kube: FakeKube, redis_url: str) -> None:
    spec = spec_for(redis_url)
    with_budget = {**spec, "worker": {**spec["worker"],
                                      "disruptionBudget": {"maxUnavailable": 1}}}
    await loop.reconcile_once(body(with_budget))
    pdb = kube.budgets["emails-worker"]
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == dep.selector_labels(NAME)
    assert pdb["metadata"]["ownerReferences"][0]["uid"] == UID
    kube.calls.clear()
    await loop.reconcile_once(body(with_budget))
    assert "apply_pdb" not in kube.calls  # unchanged: not sent again
    await loop.reconcile_once(body(spec, generation=2))
    assert kube.budgets == {}


async def test_protection_stays_while_redis_is_unreachable(
        runtime: ctl.Runtime, kube: FakeKube, client: Client,
        redis_conn: redis.asyncio.Redis, redis_url: str, clock: Clock) -> None:
    loop = ctl.TaskQueueController(runtime, NAME, NS, UID)
    spec = {**spec_for(redis_url), "disruption": {"idleSeconds": 5}}
    try:
        await busy_scene(loop, kube, client, redis_conn, spec)
        clock.advance(2)
        await loop.reconcile_once(body(spec))
        assert protection.protected(kube.annotations("w-a"))
        gone = {**spec, "redis": {"url": "redis://127.0.0.1:1/0"}}
        kube.calls.clear()
        for _ in range(3):  # well past idleSeconds
            clock.advance(5)
            await loop.reconcile_once(body(gone, generation=2))
        assert kube.condition("RedisReachable")["status"] == "False"
        assert protection.protected(kube.annotations("w-a"))
        assert not [c for c in kube.calls if c.startswith("annotate")]
    finally:
        await loop.close()


async def test_first_task_into_an_idle_queue_scales_from_zero_before_the_poll(
        runtime: ctl.Runtime, kube: FakeKube, client: Client, redis_url: str) -> None:
    live = body(spec_for(redis_url, pollSeconds=300, cooldownSeconds=0))
    flag = Flag()
    task = asyncio.create_task(ctl.run_taskqueue(runtime, live, flag))
    try:
        await until(lambda: "emails-worker" in kube.deployments, "the first pass")
        server = runtime.controllers[UID]._server
        assert server is not None
        await until(lambda: server.subscribed, "the wake-up subscription")
        await enqueue(client, "q2", 1)
        # pollSeconds is 5 minutes: only the wake-up can start a pass this soon.
        await until(lambda: kube.deployments["emails-worker"]["spec"]["replicas"] == 1,
                    "replicas 1 on the wake-up")
        assert "ScaledUp" in kube.reasons()
    finally:
        flag.event.set()
        await asyncio.wait_for(task, 5)


async def test_a_wake_up_with_replicas_running_leaves_scaling_to_the_poll(
        loop: ctl.TaskQueueController, kube: FakeKube, client: Client, redis_url: str) -> None:
    await enqueue(client, "q1", 15)
    await loop.reconcile_once(body(spec_for(redis_url)))
    assert kube.deployments["emails-worker"]["spec"]["replicas"] == 2
    loop._on_queue_wake("q1")
    assert not loop.runtime.scheduler._schedule._woken


async def test_taskqueues_on_one_redis_share_one_round_trip_per_tick(
        runtime: ctl.Runtime, kube: FakeKube, client: Client, redis_url: str) -> None:
    await enqueue(client, "q1", 5)
    loops = [ctl.TaskQueueController(runtime, f"tq{i}", NS, f"uid-{i}") for i in range(20)]
    try:
        await asyncio.gather(*(lp.reconcile_once(body(spec_for(redis_url))) for lp in loops))
        servers = {id(lp._server) for lp in loops}
        assert len(servers) == 1
        server = loops[0]._server
        assert server is not None
        assert server.round_trips == 1
        assert kube.status["backlog"] == 5
    finally:
        for lp in loops:
            await lp.close()
    assert runtime.servers._by_url == {}  # released with its last user


async def test_a_watched_deployment_is_not_read_from_the_api_again(
        loop: ctl.TaskQueueController, runtime: ctl.Runtime, kube: FakeKube, client: Client,
        redis_url: str) -> None:
    live = body(spec_for(redis_url))
    await loop.reconcile_once(live)
    assert kube.calls.count("get") == 1  # not watched yet: asked for
    runtime.deployments.seen("ADDED", kube.deployments["emails-worker"])
    await loop.reconcile_once(live)
    await enqueue(client, "q1", 25)
    await loop.reconcile_once(live)  # scales to 3 from the watched copy
    assert kube.deployments["emails-worker"]["spec"]["replicas"] == 3
    # The watch has not shown the scale yet: our own write is the newer copy.
    await loop.reconcile_once(live)
    assert kube.calls.count("get") == 1
    assert kube.calls.count("scale:3") == 1  # not scaled twice, no second event
    assert kube.reasons().count("ScaledUp") == 1


async def test_a_deployment_deleted_behind_our_back_is_created_again(
        loop: ctl.TaskQueueController, runtime: ctl.Runtime, kube: FakeKube,
        redis_url: str) -> None:
    live = body(spec_for(redis_url))
    await loop.reconcile_once(live)
    runtime.deployments.seen("ADDED", kube.deployments["emails-worker"])
    deleted = kube.deployments.pop("emails-worker")
    runtime.deployments.seen("DELETED", deleted)
    await loop.reconcile_once(live)
    assert "emails-worker" in kube.deployments


async def test_finalizers_of_another_shard_layout_are_removed(
        loop: ctl.TaskQueueController, kube: FakeKube, redis_url: str) -> None:
    live = body(spec_for(redis_url))
    live["metadata"] |= {"resourceVersion": "42", "finalizers": [
        "corral.dev/operator-shard-1-of-2", "corral.dev/operator", "example.com/theirs"]}
    await loop.reconcile_once(live)
    assert "finalizers:corral.dev/operator,example.com/theirs@42" in kube.calls
    live["metadata"]["finalizers"] = ["corral.dev/operator"]
    calls = len(kube.calls)
    await loop.reconcile_once(live)
    assert not [c for c in kube.calls[calls:] if c.startswith("finalizers:")]


async def test_a_wake_up_during_a_pass_is_not_lost(runtime: ctl.Runtime,
                                                   redis_url: str) -> None:
    loop = ctl.TaskQueueController(runtime, NAME, NS, UID)
    passes: list[int] = []

    async def one_pass(_: Any, prefetched: Any = None) -> float:
        passes.append(1)
        if len(passes) == 1:
            loop.wake()  # work appeared while this pass ran
        return 300.0

    loop.reconcile_once = one_pass  # type: ignore[method-assign]
    loop.body = body(spec_for(redis_url))
    runtime.scheduler.add(loop)
    try:
        await until(lambda: len(passes) == 2, "a second pass, not the poll in 5 minutes")
    finally:
        await runtime.scheduler.remove(UID)
        await runtime.scheduler.close()


async def test_with_the_pods_watched_a_steady_pass_makes_no_api_call(
        loop: ctl.TaskQueueController, runtime: ctl.Runtime, kube: FakeKube,
        redis_url: str) -> None:
    spec = spec_for(redis_url, minReplicas=2)
    await loop.reconcile_once(body(spec))
    await loop.reconcile_once(body(spec))
    runtime.deployments.seen("ADDED", kube.deployments["emails-worker"])
    labels = {dep.TASKQUEUE_LABEL: NAME}
    runtime.pods.seen(None, {"metadata": {"name": "w-a", "namespace": NS, "labels": labels}})
    kube.calls.clear()
    await loop.reconcile_once(body(spec))
    assert kube.calls == ["list_pods"]  # the watch shows 1 pod of 2 replicas: listed
    runtime.pods.seen(None, {"metadata": {"name": "w-b", "namespace": NS, "labels": labels}})
    kube.calls.clear()
    await loop.reconcile_once(body(spec))
    assert kube.calls == []
    runtime.pods.seen("DELETED", {"metadata": {"name": "w-b", "namespace": NS,
                                               "labels": labels}})
    await loop.reconcile_once(body(spec))
    assert kube.calls == ["list_pods"]


async def test_an_idle_taskqueue_whose_reads_did_not_change_ends_its_pass_at_once(
        loop: ctl.TaskQueueController, runtime: ctl.Runtime, kube: FakeKube, client: Client,
        redis_url: str) -> None:
    live = body(spec_for(redis_url))
    await loop.reconcile_once(live)
    runtime.deployments.seen("ADDED", kube.deployments["emails-worker"])
    await loop.reconcile_once(live)  # idle at zero, from the watched copy
    server = loop._server
    assert server is not None

    async def read() -> ctl.Prefetched:
        return ctl.Prefetched(server, await server.depths(["q1", "q2"]))

    decide_calls: list[int] = []
    original = loop._decide
    loop._decide = lambda *a: decide_calls.append(1) or original(*a)  # type: ignore[method-assign]
    kube.calls.clear()
    for _ in range(3):
        assert await loop.reconcile_once(live, await read()) == 2.0
    assert decide_calls == [] and kube.calls == []
    assert 'corral_operator_poll_duration_seconds_count{namespace="shop",taskqueue="emails"}' \
        in runtime.metrics.render().decode()
    await enqueue(client, "q1", 15)  # the depths change: a whole pass, which scales up
    await loop.reconcile_once(live, await read())
    assert decide_calls == [1]
    assert kube.deployments["emails-worker"]["spec"]["replicas"] == 2


async def test_a_wake_up_before_the_first_pass_is_over_is_kept(
        runtime: ctl.Runtime, redis_url: str) -> None:
    """The subscription's catch-up can come after the first pass read the queues."""
    loop = ctl.TaskQueueController(runtime, NAME, NS, UID)
    loop.body = body(spec_for(redis_url))
    runtime.scheduler.add(loop)
    try:
        runtime.scheduler._schedule.take(runtime.clock())  # the first pass runs
        loop._on_queue_wake("q1")
        assert runtime.scheduler._schedule._entries[UID].woken
    finally:
        await runtime.scheduler.remove(UID)
        await runtime.scheduler.close()
        await loop.close()
