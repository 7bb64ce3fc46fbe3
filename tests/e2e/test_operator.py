"""The operator end to end: the real CRD on a real control plane, ``corral operator``
in a subprocess, a real Redis, and real worker processes standing in for the pods
that kwok only pretends to run (each started with ``--worker-id`` = its pod's name)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corral.client import Client, Enqueue
from corral.connection import connect
from corral.depths import read_queue_depths
from corral.embedded import EmbeddedRedis, free_port
from corral.keys import DEFAULT_PREFIX
from corral.periodic import CatchUp, Every, Schedule
from corral.schedules import register
from corral.scripts import Scripts
from corral_operator.deployment import DELETION_COST_ANNOTATION
from tests.support.k8s import Cluster, wait_until
from tests.support.workers import WorkerProcess
from tests.unit.test_operator_models import INVALID, VALID, docs_taskqueues

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


# -- helpers ----------------------------------------------------------------------------


def get_json(k8s: Cluster, *args: str) -> dict[str, Any] | None:
    proc = k8s.kubectl("get", *args, "-o", "json", check=False)
    if proc.returncode != 0:
        if "NotFound" in proc.stderr:
            return None
        raise AssertionError(proc.stderr)
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def taskqueue(
    name: str, namespace: str, redis_url: str, queues: list[str], **scaling: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "corral.dev/v1alpha1",
        "kind": "TaskQueue",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "redis": {"url": redis_url},
            "queues": [{"name": q} for q in queues],
            "worker": {
                "image": "example.invalid/corral-app:1",
                "app": "tests.apps.basic:app",
                "concurrency": 4,
                "batchSize": 1,
                "leaseSeconds": 3,
                "graceSeconds": 5,
            },
            "scaling": {
                "pollSeconds": 1,
                "targetBacklogPerReplica": 200,
                "maxReplicas": 10,
                "scaleDownStabilizationSeconds": 3,
                "cooldownSeconds": 5,
                **scaling,
            },
        },
    }


def apply(k8s: Cluster, obj: dict[str, Any]) -> None:
    k8s.kubectl("apply", "-f", "-", input=json.dumps(obj))


def status(k8s: Cluster, namespace: str, name: str) -> dict[str, Any]:
    tq = get_json(k8s, "-n", namespace, "taskqueue", name) or {}
    return tq.get("status") or {}


def condition(st: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in st.get("conditions") or [] if c["type"] == kind), {})


def deployment_replicas(k8s: Cluster, namespace: str, name: str) -> int | None:
    d = get_json(k8s, "-n", namespace, "deployment", f"{name}-worker")
    return None if d is None else int(d["spec"].get("replicas", 0))


def wait_replicas(
    k8s: Cluster, namespace: str, name: str, want: int, timeout_s: float = 60.0
) -> None:
    def check() -> tuple[bool, Any]:
        replicas = deployment_replicas(k8s, namespace, name)
        st = status(k8s, namespace, name)
        return (
            replicas == want and st.get("desiredReplicas") == want,
            (replicas, st.get("desiredReplicas"), st.get("backlog"), st.get("inFlight")),
        )

    wait_until(f"{namespace}/{name} at {want} replicas", check, timeout_s)


def events(k8s: Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    out = get_json(
        k8s,
        "-n",
        namespace,
        "events",
        "--field-selector",
        f"involvedObject.kind=TaskQueue,involvedObject.name={name}",
    )
    return sorted((out or {}).get("items", []), key=lambda e: e["metadata"]["creationTimestamp"])


def reasons(k8s: Cluster, namespace: str, name: str) -> list[str]:
    return [e["reason"] for e in events(k8s, namespace, name)]


def running_pods(k8s: Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    out = get_json(k8s, "-n", namespace, "pods", "-l", f"corral.dev/taskqueue={name}") or {}
    return [
        p
        for p in out.get("items", [])
        if p.get("status", {}).get("phase") == "Running"
        and not p["metadata"].get("deletionTimestamp")
    ]


def polls(operator: OperatorProcess, namespace: str, name: str) -> int:
    """Reconcile passes this operator process has made for one TaskQueue."""
    series = (
        "corral_operator_poll_duration_seconds_count"
        f'{{namespace="{namespace}",taskqueue="{name}"}} '
    )
    for line in operator.metrics().splitlines():
        if line.startswith(series):
            return int(float(line.removeprefix(series)))
    return 0


def enqueue(redis_url: str, calls: list[Enqueue]) -> None:
    async def go() -> None:
        async with Client.from_url(redis_url) as client:
            await client.enqueue_many(calls)

    asyncio.run(go())


def busy_workers(redis_url: str, queue: str) -> dict[str, int]:
    async def go() -> dict[str, int]:
        redis = connect(redis_url)
        try:
            depth = (await read_queue_depths(redis, [queue]))[queue]
        finally:
            await redis.aclose()
        return {w.worker_id: w.in_flight for w in depth.workers if w.in_flight}

    return asyncio.run(go())


# -- fixtures ---------------------------------------------------------------------------


class OperatorProcess:
    """``corral operator`` in a subprocess, logging to the cluster's log directory."""

    def __init__(
        self, k8s: Cluster, args: tuple[str, ...] = (), log_name: str = "operator"
    ) -> None:
        self.k8s = k8s
        self.args = args  # extra `corral operator` flags
        self.metrics_port = free_port()
        self.health_port = free_port()
        self.log_path = k8s.state_dir / "logs" / f"{log_name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorProcess:
        # No PYTHONPATH=REPO: the repository's operator/ folder would shadow the
        # standard library's `operator` module at start-up.
        env = {**self.k8s.env(), "PYTHONUNBUFFERED": "1"}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "corral",
                    "operator",
                    "--host",
                    "127.0.0.1",
                    "--metrics-port",
                    str(self.metrics_port),
                    "--health-port",
                    str(self.health_port),
                    *self.args,
                ],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until("operator /healthz", self._healthy, timeout_s=60)
        return self

    def _healthy(self) -> tuple[bool, str]:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"operator exited {self.process.returncode}:\n{self.log_tail()}")
        try:
            url = f"http://127.0.0.1:{self.health_port}/healthz"
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.status == 200, str(resp.status)
        except OSError as exc:
            return False, str(exc)

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            return str(resp.read().decode())

    def stop(self) -> int | None:
        if self.process is None:
            return None
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self.process = None
        return code

    def kill(self) -> None:
        """SIGKILL: no goodbye to the peers, no cleanup."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(text)


@pytest.fixture(scope="module")
def operator(k8s: Cluster, crd_applied: None) -> Iterator[OperatorProcess]:
    proc = OperatorProcess(k8s).start()
    try:
        yield proc
    finally:
        code = proc.stop()
        assert code == 0, proc.log_tail()


@pytest.fixture
def namespace(k8s: Cluster) -> Iterator[str]:
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    k8s.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        k8s.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def workers() -> Iterator[dict[str, WorkerProcess]]:
    procs: dict[str, WorkerProcess] = {}
    yield procs
    for proc in procs.values():
        proc.close()


# -- the CRD ----------------------------------------------------------------------------


def test_crd_is_established_with_short_name_and_columns(k8s: Cluster, crd_applied: None) -> None:
    found = get_json(k8s, "crd", "taskqueues.corral.dev")
    assert found is not None
    assert found["spec"]["names"]["shortNames"] == ["tq"]
    # kubectl's discovery cache may need a moment to learn the new resource.
    explained = wait_until(
        "kubectl explain tq",
        lambda: (
            (p := k8s.kubectl("explain", "tq.spec.scaling.cooldownSeconds", check=False)).returncode
            == 0,
            p.stdout + p.stderr,
        ),
        timeout_s=30,
    )
    assert "how long the queues must be empty and idle" in explained


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        *[(s, m) for _, s, m in INVALID],
        (VALID, "metadata.name must be at most 63 characters"),
    ],
    ids=[*[i for i, _, _ in INVALID], "name-too-long"],
)
def test_invalid_taskqueues_are_refused(
    k8s: Cluster, crd_applied: None, spec: dict[str, Any], message: str
) -> None:
    name = "x" * 70 if message.startswith("metadata.name") else "invalid"
    body = {
        "apiVersion": "corral.dev/v1alpha1",
        "kind": "TaskQueue",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }
    proc = k8s.kubectl("create", "-f", "-", input=json.dumps(body), check=False)
    assert proc.returncode != 0, "the API server accepted an invalid TaskQueue"
    assert message in proc.stderr, proc.stderr


def test_the_docs_example_is_accepted(k8s: Cluster, crd_applied: None) -> None:
    [example] = docs_taskqueues()
    example["metadata"]["namespace"] = "default"
    k8s.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(example))


# -- the controller -----------------------------------------------------------------------


def test_create_makes_a_worker_deployment(
    k8s: Cluster, operator: OperatorProcess, namespace: str, redis_url: str
) -> None:
    k8s.kubectl(
        "-n",
        namespace,
        "create",
        "secret",
        "generic",
        "redis-auth",
        f"--from-literal=url={redis_url}",
    )
    tq = taskqueue("mail", namespace, redis_url, ["mail", "mail-slow"], minReplicas=1)
    tq["spec"]["redis"] = {"urlSecretRef": {"name": "redis-auth", "key": "url"}}
    tq["spec"]["worker"]["resources"] = {"requests": {"cpu": "100m", "memory": "64Mi"}}
    apply(k8s, tq)

    d = wait_until(
        "the Deployment",
        lambda: (
            (found := get_json(k8s, "-n", namespace, "deployment", "mail-worker")) is not None,
            found,
        ),
    )
    owner = d["metadata"]["ownerReferences"][0]
    uid = get_json(k8s, "-n", namespace, "tq", "mail")["metadata"]["uid"]  # type: ignore[index]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "TaskQueue",
        "mail",
        uid,
        True,
    )
    pod = d["spec"]["template"]["spec"]
    [c] = pod["containers"]
    assert c["command"][:3] == ["corral", "worker", "tests.apps.basic:app"]
    assert "mail=1,mail-slow=1" in c["command"]
    assert c["command"][c["command"].index("--worker-id") + 1] == "$(POD_NAME)"
    env = {e["name"]: e for e in c["env"]}
    assert env["CORRAL_REDIS_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "redis-auth",
        "key": "url",
    }
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["terminationGracePeriodSeconds"] >= 5 + 10
    assert c["resources"]["requests"] == {"cpu": "100m", "memory": "64Mi"}

    # minReplicas 1: a pod runs (kwok marks it Ready) and the status says so.
    def ready() -> tuple[bool, Any]:
        st = status(k8s, namespace, "mail")
        return condition(st, "Ready").get("status") == "True", st

    st = wait_until("Ready", ready)
    assert condition(st, "RedisReachable")["status"] == "True"
    assert st["queues"] == "mail=1,mail-slow=1"
    table = k8s.kubectl("-n", namespace, "get", "tq").stdout
    assert table.split("\n")[0].split() == [
        "NAME",
        "QUEUES",
        "BACKLOG",
        "IN-FLIGHT",
        "REPLICAS",
        "DESIRED",
        "PENDING",
        "AGE",
    ]
    assert table.split("\n")[1].split()[:7] == [
        "mail",
        "mail=1,mail-slow=1",
        "0",
        "0",
        "1",
        "1",
        "0",
    ]

    # A manual edit of the pod template is reverted; so is a manual scale.
    k8s.kubectl(
        "-n",
        namespace,
        "set",
        "image",
        "deployment/mail-worker",
        "worker=example.invalid/hijacked:1",
    )
    k8s.kubectl("-n", namespace, "scale", "deployment/mail-worker", "--replicas=4")

    def reverted() -> tuple[bool, Any]:
        d = get_json(k8s, "-n", namespace, "deployment", "mail-worker") or {}
        image = d["spec"]["template"]["spec"]["containers"][0]["image"]
        return (
            image == "example.invalid/corral-app:1" and d["spec"]["replicas"] == 1,
            (image, d["spec"]["replicas"]),
        )

    wait_until("manual edits reverted", reverted, timeout_s=30)

    # A spec change rolls out.
    k8s.kubectl(
        "-n",
        namespace,
        "patch",
        "tq",
        "mail",
        "--type=merge",
        "-p",
        '{"spec": {"worker": {"concurrency": 9}}}',
    )

    def rolled_out() -> tuple[bool, Any]:
        d = get_json(k8s, "-n", namespace, "deployment", "mail-worker") or {}
        cmd = d["spec"]["template"]["spec"]["containers"][0]["command"]
        return cmd[cmd.index("--concurrency") + 1] == "9", cmd

    wait_until("spec change rolled out", rolled_out, timeout_s=30)
    assert status(k8s, namespace, "mail")["observedGeneration"] == 2


def test_backlog_scales_up_workers_drain_and_it_scales_to_zero(
    k8s: Cluster,
    operator: OperatorProcess,
    namespace: str,
    redis_url: str,
    workers: dict[str, WorkerProcess],
) -> None:
    queue = f"q-{namespace}"
    apply(k8s, taskqueue("jobs", namespace, redis_url, [queue]))
    wait_replicas(k8s, namespace, "jobs", 0)

    # One long task (first, by priority) and 999 quick ones: 1,000 / 200 per replica = 5.
    enqueued = time.monotonic()
    enqueue(
        redis_url,
        [
            Enqueue("sleep", kwargs={"seconds": 15.0}, queue=queue, priority=9),
            *[Enqueue("noop", queue=queue) for _ in range(999)],
        ],
    )
    wait_replicas(k8s, namespace, "jobs", 5, timeout_s=30)
    print(
        f"\nbacklog -> 5 replicas observed after {time.monotonic() - enqueued:.2f}s "
        "(pollSeconds 1; the figure includes kubectl round trips)"
    )
    st = status(k8s, namespace, "jobs")
    assert st["backlog"] == 1000
    assert condition(st, "Scaling")["status"] == "True"
    [scaled_up] = [e for e in events(k8s, namespace, "jobs") if e["reason"] == "ScaledUp"]
    assert "from 0 to 5 replicas" in scaled_up["message"]
    assert "backlog 1000" in scaled_up["message"]

    # kwok runs the pods on paper; real workers run under the pods' names.
    pods = wait_until(
        "5 running pods", lambda: (len(found := running_pods(k8s, namespace, "jobs")) == 5, found)
    )
    for pod in pods:
        name = pod["metadata"]["name"]
        workers[name] = WorkerProcess(
            redis_url,
            worker_id=name,
            args=[
                "--queues",
                queue,
                "--concurrency",
                "4",
                "--batch-size",
                "1",
                "--lease-seconds",
                "3",
                "--grace-seconds",
                "5",
            ],
        )
    for proc in workers.values():
        proc.wait_started()

    # Drained but for the long task: 1 in flight -> 1 replica after the window. The
    # pod that runs it must survive: it is the only one with a deletion cost above 0.
    wait_replicas(k8s, namespace, "jobs", 1, timeout_s=60)
    busy = busy_workers(redis_url, queue)
    assert len(busy) == 1, busy
    [survivor] = wait_until(
        "4 pods gone", lambda: (len(found := running_pods(k8s, namespace, "jobs")) == 1, found)
    )
    assert survivor["metadata"]["name"] in busy
    assert int(survivor["metadata"]["annotations"][DELETION_COST_ANNOTATION]) >= 1
    # Down in one step or, as the backlog shrinks during the window, in a few.
    scaled_down = [
        e["message"] for e in events(k8s, namespace, "jobs") if e["reason"] == "ScaledDown"
    ]
    assert "from 5 to" in scaled_down[0]
    assert " to 1 replicas" in scaled_down[-1]
    for name, proc in workers.items():  # the kubelet's part: stop what was deleted
        if name != survivor["metadata"]["name"]:
            assert proc.terminate(timeout_s=30) == 0

    # The long task ends; after the cooldown the last replica goes.
    wait_replicas(k8s, namespace, "jobs", 0, timeout_s=60)
    last = [e for e in events(k8s, namespace, "jobs") if e["reason"] == "ScaledDown"][-1]
    assert "from 1 to 0 replicas (ScaleToZero)" in last["message"]
    st = status(k8s, namespace, "jobs")
    assert (st["backlog"], st["inFlight"]) == (0, 0)
    assert condition(st, "Ready")["reason"] == "ScaledToZero"
    assert st["lastScaleTime"]
    metrics = operator.metrics()
    assert (
        f'corral_operator_desired_replicas{{namespace="{namespace}",taskqueue="jobs"}} 0.0'
        in metrics
    )
    assert "corral_operator_scale_decisions_total" in metrics


def test_redis_down_holds_replicas(
    k8s: Cluster,
    operator: OperatorProcess,
    namespace: str,
    redis_url: str,
    redis_server: EmbeddedRedis,
) -> None:
    queue = f"q-{namespace}"
    apply(
        k8s,
        taskqueue(
            "held",
            namespace,
            redis_url,
            [queue],
            cooldownSeconds=1,
            scaleDownStabilizationSeconds=1,
        ),
    )
    enqueue(redis_url, [Enqueue("noop", queue=queue) for _ in range(600)])
    wait_replicas(k8s, namespace, "held", 3)

    redis_server.stop()
    try:

        def unreachable() -> tuple[bool, Any]:
            cond = condition(status(k8s, namespace, "held"), "RedisReachable")
            return cond.get("status") == "False", cond

        cond = wait_until("RedisReachable=False", unreachable, timeout_s=30)
        assert cond["reason"] == "ConnectionFailed"
        assert "RedisUnreachable" in reasons(k8s, namespace, "held")
        warning = next(
            e for e in events(k8s, namespace, "held") if e["reason"] == "RedisUnreachable"
        )
        assert warning["type"] == "Warning"
        # Several polls, well past the window and the cooldown: nothing moves.
        since = polls(operator, namespace, "held")
        wait_until(
            "5 polls without Redis",
            lambda: ((n := polls(operator, namespace, "held")) >= since + 5, n),
            timeout_s=60,
        )
        assert deployment_replicas(k8s, namespace, "held") == 3
        st = status(k8s, namespace, "held")
        assert st["desiredReplicas"] == 3
        assert condition(st, "Scaling")["reason"] == "MetricsUnavailable"
    finally:
        redis_server.start()

    def reachable() -> tuple[bool, Any]:
        cond = condition(status(k8s, namespace, "held"), "RedisReachable")
        return cond.get("status") == "True", cond

    wait_until("RedisReachable=True again", reachable, timeout_s=30)
    assert deployment_replicas(k8s, namespace, "held") == 3  # the tasks are still there


def test_deleting_the_taskqueue_removes_the_deployment(
    k8s: Cluster, operator: OperatorProcess, namespace: str, redis_url: str
) -> None:
    apply(k8s, taskqueue("gone", namespace, redis_url, ["gone"], minReplicas=2))
    wait_replicas(k8s, namespace, "gone", 2)
    wait_until("2 pods", lambda: (len(running_pods(k8s, namespace, "gone")) == 2, None))
    k8s.kubectl("-n", namespace, "delete", "tq", "gone", "--timeout=60s")

    def collected() -> tuple[bool, Any]:
        d = get_json(k8s, "-n", namespace, "deployment", "gone-worker")
        pods = running_pods(k8s, namespace, "gone")
        return d is None and not pods, (d is not None, len(pods))

    wait_until("Deployment and pods garbage-collected", collected)
    gauge = f'corral_operator_desired_replicas{{namespace="{namespace}",taskqueue="gone"}}'
    wait_until("its gauges dropped", lambda: (gauge not in operator.metrics(), None))


def test_two_taskqueues_in_two_namespaces(
    k8s: Cluster, operator: OperatorProcess, redis_url: str
) -> None:
    spaces = [f"e2e-two-{uuid.uuid4().hex[:6]}" for _ in range(2)]
    try:
        for ns in spaces:
            k8s.kubectl("create", "namespace", ns)
            apply(k8s, taskqueue("tq", ns, redis_url, [f"q-{ns}"]))
        # A broken neighbour (its Secret does not exist) must not hold the others up.
        broken = taskqueue("broken", spaces[0], redis_url, ["broken"])
        broken["spec"]["redis"] = {"urlSecretRef": {"name": "missing", "key": "url"}}
        apply(k8s, broken)
        for ns in spaces:
            wait_replicas(k8s, ns, "tq", 0)
        wait_until(
            "broken reported",
            lambda: (
                (cond := condition(status(k8s, spaces[0], "broken"), "RedisReachable")).get(
                    "reason"
                )
                == "SecretNotFound",
                cond,
            ),
        )
        enqueue(redis_url, [Enqueue("noop", queue=f"q-{spaces[0]}") for _ in range(450)])
        wait_replicas(k8s, spaces[0], "tq", 3)
        assert deployment_replicas(k8s, spaces[1], "tq") == 0
        enqueue(redis_url, [Enqueue("noop", queue=f"q-{spaces[1]}") for _ in range(250)])
        wait_replicas(k8s, spaces[1], "tq", 2)
        assert deployment_replicas(k8s, spaces[0], "tq") == 3
    finally:
        for ns in spaces:
            k8s.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_operator_restart_resumes_without_flapping(
    k8s: Cluster, operator: OperatorProcess, namespace: str, redis_url: str
) -> None:
    queue = f"q-{namespace}"
    apply(
        k8s,
        taskqueue(
            "steady",
            namespace,
            redis_url,
            [queue],
            scaleDownStabilizationSeconds=20,
            cooldownSeconds=20,
        ),
    )
    enqueue(redis_url, [Enqueue("noop", queue=queue) for _ in range(700)])
    wait_replicas(k8s, namespace, "steady", 4)
    # The queue empties while the operator is down; after the restart the replicas
    # stay for a full stabilization window instead of dropping at the first poll.
    assert operator.stop() == 0
    asyncio.run(_flush(redis_url))
    operator.start()
    # The restarted operator's own status write: the old one never saw the queue empty.
    st = wait_until(
        "a status written by the restarted operator",
        lambda: ((found := status(k8s, namespace, "steady")).get("backlog") == 0, found),
        timeout_s=30,
    )
    assert st["desiredReplicas"] == 4
    wait_until(
        "a few more polls",
        lambda: ((n := polls(operator, namespace, "steady")) >= 4, n),
        timeout_s=30,
    )
    assert deployment_replicas(k8s, namespace, "steady") == 4
    assert "ScaledDown" not in reasons(k8s, namespace, "steady")


async def _flush(redis_url: str) -> None:
    redis = connect(redis_url)
    try:
        await redis.flushall()
    finally:
        await redis.aclose()


def test_a_periodic_task_ticks_a_taskqueue_up_from_zero(
    k8s: Cluster,
    operator: OperatorProcess,
    namespace: str,
    redis_url: str,
    workers: dict[str, WorkerProcess],
) -> None:
    queue = f"q-{namespace}"
    apply(k8s, taskqueue("beat", namespace, redis_url, [queue]))
    wait_replicas(k8s, namespace, "beat", 0)
    # A schedule registered by an earlier worker; none runs now.
    schedule = Schedule(
        name="beat",
        task="record",
        queue=queue,
        cadence=Every(2000),
        args=("beat",),
        kwargs={},
        priority=0,
        catch_up=CatchUp.LATEST,
        max_catch_up=100,
    )
    asyncio.run(_register(redis_url, schedule))
    # The operator enqueues the tick, then scales from zero to run it.
    wait_replicas(k8s, namespace, "beat", 1, timeout_s=30)
    [pod] = wait_until(
        "a running pod", lambda: (len(found := running_pods(k8s, namespace, "beat")) == 1, found)
    )
    name = pod["metadata"]["name"]
    workers[name] = WorkerProcess(redis_url, worker_id=name, args=["--queues", queue])
    workers[name].wait_started()
    wait_until(
        "the tick's task ran", lambda: ((n := asyncio.run(_runs(redis_url))) >= 1, n), timeout_s=30
    )


async def _register(redis_url: str, schedule: Schedule) -> None:
    redis = connect(redis_url)
    try:
        await register(Scripts.register(redis), [schedule], [schedule.queue], prefix=DEFAULT_PREFIX)
    finally:
        await redis.aclose()


async def _runs(redis_url: str) -> int:
    redis = connect(redis_url)
    try:
        return int(await redis.llen("test:order"))
    finally:
        await redis.aclose()
