"""The operator with a real node autoscaler: Karpenter's kwok provider on the test
control plane. Each test has a NodePool of its own with no nodes at first; worker
pods reach only its nodes (nodeSelector and a toleration), so every pod waits for
Karpenter to add a node. Real worker processes stand in for the pods
(``tests.support.podworkers``): one starts when its pod is Running and gets SIGTERM
when the pod is deleted, by the ReplicaSet or by Karpenter draining a node.

Interruptions are counted from the tasks' own records (``tracked`` and ``gated``
in tests/apps/basic.py): a task that started more often than it finished was
interrupted. The same scenario with the protection switched off must interrupt
tasks, so the protected run's zero means something."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis

from corral.client import Enqueue
from corral_operator.protection import DO_NOT_DISRUPT, SAFE_TO_EVICT
from tests.e2e.test_operator import (
    OperatorProcess,
    apply,
    condition,
    crd_applied,
    enqueue,
    get_json,
    namespace,
    status,
    taskqueue,
    wait_until,
)
from tests.support.k8s import Cluster, Karpenter
from tests.support.podworkers import PodWorkers

pytestmark = pytest.mark.e2e
__all__ = ["crd_applied", "namespace"]  # fixtures used here

HOLD_S = 20.0  # how long the long tasks run on once the scale-down is over
GRACE_S = 2  # far below LONG_S: a drained busy worker interrupts its task
WORKER_ARGS = ["--concurrency", "1", "--batch-size", "1", "--lease-seconds", "5",
               "--grace-seconds", str(GRACE_S)]


@pytest.fixture(scope="module")
def operator(k8s: Cluster, crd_applied: None) -> Iterator[OperatorProcess]:
    proc = OperatorProcess(k8s, log_name="operator-karpenter").start()
    try:
        yield proc
    finally:
        assert proc.stop() == 0, proc.log_tail()


@pytest.fixture
def pool(karpenter: Karpenter) -> Iterator[str]:
    """A NodePool's name; the test makes the NodePool (``karpenter.node_pool``)."""
    name = f"p-{uuid.uuid4().hex[:8]}"
    try:
        yield name
    finally:
        karpenter.delete_pool(name)


def karpenter_taskqueue(name: str, namespace: str, redis_url: str, queue: str,
                        karpenter: Karpenter, pool: str, protect: bool,
                        target: int = 2) -> dict[str, Any]:
    """TARGET tasks per replica, one task running per worker (and one prefetched),
    1-CPU pods on POOL's nodes."""
    tq = taskqueue(name, namespace, redis_url, [queue], targetBacklogPerReplica=target,
                   maxReplicas=6, scaleDownStabilizationSeconds=2, cooldownSeconds=3)
    tq["spec"]["worker"].update({
        "concurrency": 1, "batchSize": 1, "leaseSeconds": 5, "graceSeconds": GRACE_S,
        "resources": {"requests": {"cpu": "1", "memory": "256Mi"}},
        **karpenter.scheduling(pool),
    })
    tq["spec"]["disruption"] = {"protectBusyWorkers": protect, "idleSeconds": 5}
    if not protect:  # the old behaviour: scale down to ceil(inFlight / target) at once
        tq["spec"]["scaling"]["maxDrainSeconds"] = 0
    return tq


@dataclass
class Records:
    """The ``tracked`` tasks' own start/finish records."""

    redis_url: str
    record: str

    def _hash(self, suffix: str) -> dict[str, int]:
        r = redis.Redis.from_url(self.redis_url)
        try:
            raw = r.hgetall(f"{self.record}:{suffix}")
        finally:
            r.close()
        return {k.decode(): int(v) for k, v in raw.items()}

    def finished(self) -> int:
        return len(self._hash("finishes"))

    def started(self) -> int:
        return len(self._hash("starts"))

    def interrupted(self) -> int:
        """Starts that did not finish: each is a task cut off and run again."""
        starts, finishes = self._hash("starts"), self._hash("finishes")
        return sum(n - finishes.get(key, 0) for key, n in starts.items())

    def first_start_ms(self) -> int | None:
        r = redis.Redis.from_url(self.redis_url)
        try:
            first = r.lindex(f"{self.record}:start_ms", 0)
        finally:
            r.close()
        return None if first is None else int(first)


def long_and_short(queue: str, record: str, long_tasks: int, short_tasks: int
                   ) -> list[Enqueue]:
    """Long tasks first (higher priority), then short ones; all wait for a gate
    (``release``), so the test decides when the load drops and when it ends."""
    def gated(kind: str, i: int, priority: int) -> Enqueue:
        return Enqueue("gated", kwargs={"record": record, "task_key": f"{kind}-{i}",
                                        "gate": f"{record}:{kind}-gate"},
                       queue=queue, priority=priority)

    return [*(gated("long", i, 9) for i in range(long_tasks)),
            *(gated("short", i, 0) for i in range(short_tasks))]


def release(redis_url: str, record: str, kind: str) -> None:
    """Let the tasks of KIND (long or short) finish."""
    r = redis.Redis.from_url(redis_url)
    try:
        r.set(f"{record}:{kind}-gate", 1)
    finally:
        r.close()


def replicas(k8s: Cluster, namespace: str, name: str) -> int:
    return int(status(k8s, namespace, name).get("replicas") or 0)


# -- scale-up from no nodes -----------------------------------------------------------------


def test_scale_up_from_no_nodes_drains_the_queue_then_nodes_go(
        k8s: Cluster, karpenter: Karpenter, operator: OperatorProcess, namespace: str,
        redis_url: str, pool: str) -> None:
    queue, record = f"q-{namespace}", f"rec-{namespace}"
    tq = karpenter_taskqueue("burst", namespace, redis_url, queue, karpenter, pool, True)
    tq["spec"]["worker"]["concurrency"] = 20
    tq["spec"]["worker"]["disruptionBudget"] = {"maxUnavailable": 1}
    tq["spec"]["scaling"]["targetBacklogPerReplica"] = 250
    apply(k8s, tq)
    assert karpenter.nodes(pool) == []
    pdb = wait_until("the PodDisruptionBudget", lambda: (
        (found := get_json(k8s, "-n", namespace, "pdb", "burst-worker")) is not None, found))
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"]["corral.dev/taskqueue"] == "burst"

    with PodWorkers(k8s, namespace, "burst", redis_url,
                    ["--queues", queue, "--concurrency", "20", "--batch-size", "10",
                     "--lease-seconds", "5", "--grace-seconds", str(GRACE_S)]) as pods:
        enqueue(redis_url, [Enqueue("tracked", kwargs={"record": record, "task_key": f"t{i}"},
                                    queue=queue) for i in range(1000)])

        # 1,000 tasks / 250 per replica = 4 pods, and no node they may run on: the
        # operator says it waits for capacity.
        def pending() -> tuple[bool, Any]:
            st = status(k8s, namespace, "burst")
            return (st.get("pendingReplicas") == 4
                    and condition(st, "Scaling").get("reason") == "CapacityPending", st)

        st = wait_until("4 pods pending for nodes", pending, timeout_s=30)
        assert "wait for a node" in condition(st, "Scaling")["message"]
        table = k8s.kubectl("-n", namespace, "get", "tq", "burst").stdout.split("\n")
        assert table[0].split()[5:7] == ["DESIRED", "PENDING"]
        assert table[1].split()[4:7] == ["4", "4", "4"]

        # The NodePool appears: Karpenter adds nodes, the pods run, the queue drains.
        nodepool_ms = int(time.time() * 1000)
        karpenter.node_pool(pool, consolidate_after="5s")
        wait_until("Karpenter's nodes", lambda: (len(n := karpenter.nodes(pool)) >= 1, n),
                   timeout_s=60)
        wait_until("queue drained", lambda: ((done := Records(redis_url, record).finished())
                                             == 1000, done), timeout_s=120)
        first_ms = Records(redis_url, record).first_start_ms()
        assert first_ms is not None
        nodes = len(karpenter.nodes(pool))
        print(f"\nNodePool -> first task on a new node: {(first_ms - nodepool_ms) / 1000:.1f}s "
              f"({nodes} node(s); {len(pods.workers)} pods)")
        for pod in pods.workers.values():
            assert pod.process.poll() is None or pod.process.returncode == 0, pod.output()

        # Idle: the operator scales to zero and Karpenter removes the empty nodes.
        wait_until("0 replicas", lambda: ((r := replicas(k8s, namespace, "burst")) == 0, r),
                   timeout_s=60)
        wait_until("no nodes left", lambda: (not (n := karpenter.nodes(pool)), n),
                   timeout_s=120)
    assert Records(redis_url, record).interrupted() == 0
    assert status(k8s, namespace, "burst")["pendingReplicas"] == 0


# -- load drops while long tasks run ---------------------------------------------------------


@dataclass
class Outcome:
    interrupted: int
    nodes_peak: int
    nodes_after: int
    lowest_replicas: int  # while the long tasks ran
    most_protected: int  # most pods seen with do-not-disrupt and safe-to-evict=false
    released: bool  # every pod left lost the two annotations once its worker was idle


def load_drops(k8s: Cluster, karpenter: Karpenter, namespace: str, redis_url: str,
               pool: str, protect: bool) -> Outcome:
    """4 long tasks and 32 short ones, 6 per replica: 6 pods. A worker runs one task
    and prefetches one, so the long ones (first by priority) sit on two to four pods.
    Once the short ones are done, ceil(4 / 6) = 1 replica would do. The long tasks run
    on until HOLD_S after the scale-down (Karpenter may consolidate meanwhile), then
    they are let go and the queue drains."""
    queue, record = f"q-{namespace}", f"rec-{namespace}"
    karpenter.node_pool(pool, consolidate_after="5s")
    tq = karpenter_taskqueue("drop", namespace, redis_url, queue, karpenter, pool, protect,
                             target=6)
    # Long enough for the short tasks to drain at six replicas once they are let go: a
    # backlog left behind the busy pods would wait for the long tasks.
    tq["spec"]["scaling"]["scaleDownStabilizationSeconds"] = 8
    # Pods outlive idleSeconds (5) once the work is done, to see them released.
    tq["spec"]["scaling"]["cooldownSeconds"] = 15
    apply(k8s, tq)
    records = Records(redis_url, record)
    with PodWorkers(k8s, namespace, "drop", redis_url,
                    ["--queues", queue, *WORKER_ARGS]) as pods:
        enqueue(redis_url, long_and_short(queue, record, long_tasks=4, short_tasks=32))
        wait_until("6 replicas", lambda: ((r := replicas(k8s, namespace, "drop")) == 6, r),
                   timeout_s=30)
        # Six workers up, each running a task. Then the short ones go, the load drops.
        wait_until("6 tasks running", lambda: (
            (n := records.started()) == 6, (n, pods.errors[-1:])), timeout_s=120)
        release(redis_url, record, "short")
        # (A short task prefetched behind a long one waits for it.)
        wait_until("the scale-down", lambda: (
            (r := replicas(k8s, namespace, "drop")) < 6, r), timeout_s=60)
        nodes_peak, lowest, most_protected = len(karpenter.nodes(pool)), 6, 0
        until = time.monotonic() + HOLD_S
        while time.monotonic() < until:
            nodes_peak = max(nodes_peak, len(karpenter.nodes(pool)))
            lowest = min(lowest, replicas(k8s, namespace, "drop"))
            most_protected = max(most_protected, len(protected_pods(k8s, namespace)))
            time.sleep(0.5)
        nodes_after = len(karpenter.nodes(pool))
        release(redis_url, record, "long")
        wait_until("all 36 tasks finished", lambda: (
            (n := records.finished()) == 36, n), timeout_s=90)
        released = wait_until("annotations removed from idle pods", lambda: (
            not (found := protected_pods(k8s, namespace)), found), timeout_s=30) == []
        return Outcome(records.interrupted(), nodes_peak, nodes_after, lowest,
                       most_protected, released)


def protected_pods(k8s: Cluster, namespace: str) -> list[str]:
    """Live worker pods that carry both annotations (all of them or none are expected)."""
    out = get_json(k8s, "-n", namespace, "pods", "-l", "corral.dev/taskqueue=drop") or {}
    found = []
    for pod in out.get("items", []):
        notes = pod["metadata"].get("annotations") or {}
        if pod["metadata"].get("deletionTimestamp"):
            continue
        if notes.get(DO_NOT_DISRUPT) == "true" or notes.get(SAFE_TO_EVICT) == "false":
            assert notes.get(DO_NOT_DISRUPT) == "true" and notes.get(SAFE_TO_EVICT) == "false"
            found.append(pod["metadata"]["name"])
    return found


def test_load_drops_and_no_running_task_is_interrupted(
        k8s: Cluster, karpenter: Karpenter, operator: OperatorProcess, namespace: str,
        redis_url: str, pool: str) -> None:
    outcome = load_drops(k8s, karpenter, namespace, redis_url, pool, protect=True)
    print(f"\nprotected: {outcome}")
    assert outcome.interrupted == 0
    # The operator scaled down while the long tasks ran, to the busy pods (the long
    # tasks are on two to four of them) and never below; Karpenter had several nodes
    # to consolidate.
    assert 2 <= outcome.lowest_replicas < 6
    assert outcome.nodes_peak >= 2
    # The busy pods carried the annotations, and lost them once idle.
    assert outcome.most_protected >= 2
    assert outcome.released
    st = status(k8s, namespace, "drop")
    assert st["pendingReplicas"] == 0


def test_without_protection_the_same_load_drop_interrupts_tasks(
        k8s: Cluster, karpenter: Karpenter, operator: OperatorProcess, namespace: str,
        redis_url: str, pool: str) -> None:
    outcome = load_drops(k8s, karpenter, namespace, redis_url, pool, protect=False)
    print(f"\nunprotected: {outcome}")
    # Down to one replica: at least one busy pod was removed, its task cut off.
    assert outcome.interrupted >= 1
    assert outcome.lowest_replicas == 1
    assert outcome.most_protected == 0
