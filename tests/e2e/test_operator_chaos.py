"""The operator under faults, on the real control plane: the API server restarted,
Redis unreachable, the operator killed with SIGKILL and restarted, and the active
one of two peered replicas killed. After each fault the operator must converge to
the replica count the queue asks for, must not scale down (least of all to zero)
while a metric is missing, and must post exactly one scale event per real change.

Each fault here is a short form (a 10 s Redis outage, a 5 s API server outage);
``bench/operator_chaos.py`` runs the same faults, longer, and prints the figures.
The load is a fixed backlog with no workers, so the right count is known exactly:
``ceil(tasks / TARGET_PER_REPLICA)``; each fault adds tasks while it lasts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from corral.client import Enqueue
from corral.embedded import EmbeddedRedis
from tests.e2e.test_operator import (
    OperatorProcess,
    apply,
    condition,
    deployment_replicas,
    enqueue,
    events,
    status,
)
from tests.support.k8s import Cluster, wait_until

pytestmark = pytest.mark.e2e

TARGET_PER_REPLICA = 100
MAX_REPLICAS = 20
TASKS_PER_FAULT = 200  # two more replicas' worth of backlog
CutMode = Literal["refuse", "blackhole"]


# -- a Redis the operator can be cut off from --------------------------------------------


class RedisCut:
    """A TCP proxy in front of Redis, on its own thread and event loop. The operator
    reaches Redis through it; the test itself writes to Redis directly.

    ``cut("refuse")`` drops every connection and refuses new ones (Redis looks down);
    ``cut("blackhole")`` keeps connections open and passes nothing (a partition: reads
    time out); ``heal()`` drops what the cut left behind and lets new connections in."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.mode: CutMode | Literal["open"] = "open"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="redis-cut",
                                        daemon=True)
        self._server: asyncio.Server | None = None
        self._conns: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> RedisCut:
        self._thread.start()
        self._run(self._listen())
        return self

    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def cut(self, mode: CutMode) -> None:
        self._run(self._set(mode))

    def heal(self) -> None:
        self._run(self._set("open"))

    def close(self) -> None:
        self._run(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _set(self, mode: CutMode | Literal["open"]) -> None:
        previous, self.mode = self.mode, mode
        if mode == "refuse" or (mode == "open" and previous == "blackhole"):
            for conn in list(self._conns):
                for writer in conn:
                    writer.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        finally:
            self._tasks.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "refuse":
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        conn = (writer, up_writer)
        self._conns.add(conn)
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            self._conns.discard(conn)
            for w in conn:
                w.close()
                with contextlib.suppress(OSError):
                    await w.wait_closed()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65_536):
                if self.mode == "open":  # a blackhole swallows what it gets
                    writer.write(data)
                    await writer.drain()
        writer.close()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._conns):
            for writer in conn:
                writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()


# -- watching the replica count ------------------------------------------------------------


class ReplicaSampler:
    """Reads the Deployment's replica count twice a second on a thread, so a fault's
    lowest count is known even if the operator changed it back before the end."""

    def __init__(self, read: Callable[[], int | None], interval_s: float = 0.5) -> None:
        self._read = read
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="replica-sampler", daemon=True)
        self.samples: list[tuple[float, int]] = []

    def __enter__(self) -> ReplicaSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _loop(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):  # the API server may be away
                value = self._read()
                if value is not None:
                    self.samples.append((time.monotonic(), value))
            self._stop.wait(self._interval_s)

    def lowest(self) -> int | None:
        return min((v for _, v in self.samples), default=None)


# -- one TaskQueue under faults ------------------------------------------------------------


@dataclass
class FaultFigures:
    fault: str
    outage_s: float  # how long the fault lasted
    before: int  # replicas when it began
    expected: int  # replicas the backlog asks for once it is over
    lowest: int | None  # lowest replica count seen while it lasted
    convergence_s: float  # from the end of the fault to the expected replica count

    def line(self) -> str:
        return (f"{self.fault:<28} outage {self.outage_s:5.1f} s  replicas {self.before} -> "
                f"{self.expected} (lowest during fault {self.lowest})  "
                f"converged {self.convergence_s:5.1f} s after")


SCALED = re.compile(r"Scaled \S+ from (\d+) to (\d+) replicas")


@dataclass
class ChaosRun:
    """One TaskQueue with a known backlog, reached by the operator through ``proxy``."""

    k8s: Cluster
    namespace: str
    name: str
    redis_url: str  # direct, for the test's own writes
    proxy: RedisCut
    tasks: int = 0
    changes: list[tuple[int, int]] = field(default_factory=list)  # real replica changes
    figures: list[FaultFigures] = field(default_factory=list)

    @property
    def queue(self) -> str:
        return f"chaos-{self.namespace}-{self.name}"

    def expected(self) -> int:
        return min(math.ceil(self.tasks / TARGET_PER_REPLICA), MAX_REPLICAS)

    def replicas(self) -> int | None:
        return deployment_replicas(self.k8s, self.namespace, self.name)

    def start(self, tasks: int, timeout_s: float = 60.0) -> None:
        apply(self.k8s, taskqueue(self.name, self.namespace, self.proxy.url(), self.queue))
        self.add_load(tasks)
        self.wait_expected(timeout_s)
        self.changes.append((0, self.expected()))

    def add_load(self, tasks: int) -> None:
        enqueue(self.redis_url, [Enqueue("noop", queue=self.queue) for _ in range(tasks)])
        self.tasks += tasks

    def wait_expected(self, timeout_s: float) -> float:
        """Wait until the Deployment and the status are at the expected count; returns
        the monotonic time it was seen."""
        want = self.expected()

        def check() -> tuple[bool, Any]:
            replicas = self.replicas()
            desired = status(self.k8s, self.namespace, self.name).get("desiredReplicas")
            return replicas == want and desired == want, (replicas, desired)

        wait_until(f"{self.namespace}/{self.name} at {want} replicas", check, timeout_s)
        return time.monotonic()

    def settle(self, fault: str, outage_s: float, before: int, lowest: int | None,
               since: float, timeout_s: float = 120.0) -> FaultFigures:
        """After a fault: wait for the expected count and record the figures, the
        convergence time counted from ``since`` (monotonic)."""
        convergence_s = self.wait_expected(timeout_s) - since
        figures = FaultFigures(fault, outage_s, before, self.expected(), lowest, convergence_s)
        if figures.expected != before:
            self.changes.append((before, figures.expected))
        self.figures.append(figures)
        print(figures.line(), flush=True)
        return figures

    def scale_events(self) -> list[tuple[int, int]]:
        """(from, to) of every ScaledUp / ScaledDown event, oldest first."""
        found = [SCALED.search(e["message"]) for e in events(self.k8s, self.namespace, self.name)
                 if e["reason"] in ("ScaledUp", "ScaledDown")]
        return [(int(m[1]), int(m[2])) for m in found if m]

    def event_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for e in events(self.k8s, self.namespace, self.name):
            counts[e["reason"]] = counts.get(e["reason"], 0) + 1
        return counts


def taskqueue(name: str, namespace: str, redis_url: str, queue: str) -> dict[str, Any]:
    # Short windows, so a wrongly missing-metric-means-idle policy would show within a fault.
    return {
        "apiVersion": "corral.dev/v1alpha1", "kind": "TaskQueue",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "redis": {"url": redis_url},
            "queues": [{"name": queue}],
            "worker": {"image": "example.invalid/corral-app:1", "app": "tests.apps.basic:app"},
            "scaling": {"pollSeconds": 1, "targetBacklogPerReplica": TARGET_PER_REPLICA,
                        "maxReplicas": MAX_REPLICAS, "scaleDownStabilizationSeconds": 3,
                        "cooldownSeconds": 3},
        },
    }


# -- the faults ----------------------------------------------------------------------------


def redis_outage(run: ChaosRun, outage_s: float, mode: CutMode = "blackhole") -> FaultFigures:
    """Cut the operator off from Redis while the backlog grows; it must hold the replica
    count (RedisReachable=False) and catch up once Redis is back."""
    before = run.expected()
    with ReplicaSampler(run.replicas) as sampler:
        started = time.monotonic()
        run.proxy.cut(mode)
        run.add_load(TASKS_PER_FAULT)

        def unreachable() -> tuple[bool, Any]:
            cond = condition(status(run.k8s, run.namespace, run.name), "RedisReachable")
            return cond.get("status") == "False", cond

        wait_until("RedisReachable=False", unreachable, timeout_s=outage_s + 30)
        time.sleep(max(0.0, outage_s - (time.monotonic() - started)))
        held = run.replicas()
        run.proxy.heal()
        healed = time.monotonic()
    assert held == before, f"replicas moved to {held} while Redis was unreachable"
    return run.settle(f"redis {mode} {outage_s:.0f}s", healed - started, before,
                      sampler.lowest(), since=healed)


def apiserver_restart(run: ChaosRun, downtime_s: float) -> FaultFigures:
    """Restart kube-apiserver with ``downtime_s`` between stop and start; the backlog
    grows while it is away."""
    before = run.expected()
    failure: list[BaseException] = []

    def restart() -> None:
        try:
            run.k8s.restart_apiserver(downtime=downtime_s)
        except BaseException as exc:  # re-raised below, on the test's thread
            failure.append(exc)

    with ReplicaSampler(run.replicas) as sampler:
        restarter = threading.Thread(target=restart, name="apiserver-restart")
        started = time.monotonic()
        restarter.start()
        wait_until("the API server going away", lambda: (
            run.k8s.kubectl("get", "--raw=/readyz", check=False, timeout=5).returncode != 0,
            None), timeout_s=60, interval_s=0.1)
        run.add_load(TASKS_PER_FAULT)
        restarter.join(300)
        back = time.monotonic()
    if failure:
        raise failure[0]
    return run.settle(f"apiserver restart {downtime_s:.0f}s", back - started, before,
                      sampler.lowest(), since=back)


def operator_kill(run: ChaosRun, operator: OperatorProcess, down_s: float) -> FaultFigures:
    """SIGKILL the operator, grow the backlog, start it again after ``down_s``."""
    before = run.expected()
    with ReplicaSampler(run.replicas) as sampler:
        started = time.monotonic()
        operator.kill()
        run.add_load(TASKS_PER_FAULT)
        time.sleep(down_s)
        restarted = time.monotonic()
        operator.start()
    return run.settle(f"operator SIGKILL, down {down_s:.0f}s", restarted - started, before,
                      sampler.lowest(), since=restarted)


def peering_failover(run: ChaosRun, active: OperatorProcess,
                     standby: OperatorProcess) -> FaultFigures:
    """SIGKILL the active one of two peered replicas; the standby must take over once
    the dead one's peering record expires. Convergence counts from the kill."""
    before = run.expected()
    with ReplicaSampler(run.replicas) as sampler:
        killed = time.monotonic()
        active.kill()
        run.add_load(TASKS_PER_FAULT)
        run.wait_expected(timeout_s=120)
    return run.settle("peering: active SIGKILLed", 0.0, before, sampler.lowest(), since=killed)


def serves(operator: OperatorProcess, run: ChaosRun) -> bool:
    """Whether this replica runs the TaskQueue's loop (only the active one exports it)."""
    return f'taskqueue="{run.name}"' in operator.metrics()


def assert_no_flapping(run: ChaosRun) -> None:
    """One scale event per real change, each with the right numbers, and no scale to
    zero at any time."""
    assert run.scale_events() == run.changes, run.event_counts()
    assert all(f.lowest is None or f.lowest >= f.before for f in run.figures), run.figures


# -- fixtures --------------------------------------------------------------------------------


def make_namespace(k8s: Cluster, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    k8s.kubectl("create", "namespace", name)
    return name


@pytest.fixture(scope="module")
def chaos_ns(k8s: Cluster, crd_applied: None) -> Iterator[str]:
    name = make_namespace(k8s, "chaos")
    yield name
    k8s.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="module")
def chaos_operator(k8s: Cluster, chaos_ns: str) -> Iterator[OperatorProcess]:
    """A standalone operator serving only this module's namespace."""
    proc = OperatorProcess(k8s, ("--namespace", chaos_ns), log_name="operator-chaos").start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def proxy(redis_server: EmbeddedRedis) -> Iterator[RedisCut]:
    cut = RedisCut(redis_server.port).start()
    yield cut
    cut.close()


@pytest.fixture
def run(k8s: Cluster, chaos_ns: str, redis_url: str, proxy: RedisCut) -> Iterator[ChaosRun]:
    chaos = ChaosRun(k8s, chaos_ns, f"tq-{uuid.uuid4().hex[:6]}", redis_url, proxy)
    yield chaos
    proxy.heal()
    k8s.kubectl("-n", chaos_ns, "delete", "tq", chaos.name, "--wait=false", check=False)


def assert_healthy(operator: OperatorProcess) -> None:
    assert operator.alive, operator.log_tail()
    log = operator.log_path.read_text(errors="replace")
    assert "reconcile failed unexpectedly" not in log, operator.log_tail(200)


# -- the tests -----------------------------------------------------------------------------


def test_redis_unreachable_holds_then_catches_up(run: ChaosRun,
                                                 chaos_operator: OperatorProcess) -> None:
    run.start(300)
    redis_outage(run, outage_s=10, mode="blackhole")
    assert_no_flapping(run)
    counts = run.event_counts()
    assert (counts.get("RedisUnreachable"), counts.get("RedisReachable")) == (1, 1), counts
    assert_healthy(chaos_operator)


def test_apiserver_restart(run: ChaosRun, chaos_operator: OperatorProcess) -> None:
    run.start(300)
    apiserver_restart(run, downtime_s=5)
    assert_no_flapping(run)
    assert_healthy(chaos_operator)


def test_operator_sigkill_and_restart(run: ChaosRun, chaos_operator: OperatorProcess) -> None:
    run.start(300)
    operator_kill(run, chaos_operator, down_s=3)
    assert_no_flapping(run)
    assert_healthy(chaos_operator)


def test_peered_replicas_one_active_and_the_standby_takes_over(
        k8s: Cluster, crd_applied: None, redis_url: str, proxy: RedisCut) -> None:
    namespace = make_namespace(k8s, "peers")
    peering = "corral-chaos"
    k8s.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "kopf.dev/v1", "kind": "KopfPeering",
        "metadata": {"name": peering, "namespace": namespace}}))
    args = ("--namespace", namespace, "--peering", peering, "--peering-lifetime", "5")
    # Started one after the other: the first has the higher priority and is active.
    first = OperatorProcess(k8s, args, log_name=f"operator-{namespace}-a").start()
    second = OperatorProcess(k8s, args, log_name=f"operator-{namespace}-b").start()
    try:
        run = ChaosRun(k8s, namespace, "tq", redis_url, proxy)
        run.start(300)
        assert serves(first, run) and not serves(second, run)
        assert "Pausing all operators" not in first.log_path.read_text()
        figures = peering_failover(run, active=first, standby=second)
        assert serves(second, run)
        assert "Resuming operations" in second.log_path.read_text()
        assert_no_flapping(run)
        assert_healthy(second)
        # Bounded by the peering lifetime (5 s) plus a pass; never scaled down meanwhile.
        assert figures.lowest == figures.before
    finally:
        first.stop()
        second.stop()
        k8s.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
