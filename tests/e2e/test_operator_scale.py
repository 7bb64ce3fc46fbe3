"""The operator beyond one TaskQueue per poll: scaling from zero on the wake-up that
producers publish (not on the poll), and TaskQueues split across shards
(``corral operator --shard I/N``), each shard a kopf peering of its own."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator

import pytest

from corral.client import Enqueue
from corral.embedded import EmbeddedRedis
from corral_operator.shards import shard_of
from tests.e2e.test_operator import (
    OperatorProcess,
    apply,
    deployment_replicas,
    enqueue,
    get_json,
    taskqueue,
    wait_replicas,
    wait_until,
)
from tests.support.k8s import Cluster

pytestmark = pytest.mark.e2e

POLL_S = 60  # far longer than any wait below: only a wake-up can act in time
WAKE_BOUND_S = 20.0
_SERVED = re.compile(r'corral_operator_desired_replicas\{namespace="([^"]+)",taskqueue="([^"]+)"')


@pytest.fixture
def namespace(k8s: Cluster, crd_applied: None) -> Iterator[str]:
    name = f"scale-{uuid.uuid4().hex[:6]}"
    k8s.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        k8s.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def processes() -> Iterator[list[OperatorProcess]]:
    started: list[OperatorProcess] = []
    yield started
    for proc in started:
        proc.stop()


def poll_passes(operator: OperatorProcess, namespace: str, name: str) -> int:
    pattern = (rf'corral_operator_poll_duration_seconds_count\{{namespace="{namespace}",'
               rf'taskqueue="{name}"\}} (\S+)')
    match = re.search(pattern, operator.metrics())
    return int(float(match[1])) if match else 0


def served(operator: OperatorProcess, namespace: str) -> set[str]:
    """The TaskQueues whose loop this operator process runs (it exports only those)."""
    return {tq for ns, tq in _SERVED.findall(operator.metrics()) if ns == namespace}


def uid_of(k8s: Cluster, namespace: str, name: str) -> str:
    tq = get_json(k8s, "-n", namespace, "taskqueue", name)
    assert tq is not None
    return str(tq["metadata"]["uid"])


# -- scale from zero on the wake-up --------------------------------------------------------


def test_first_task_into_an_idle_queue_scales_from_zero_long_before_the_poll(
        k8s: Cluster, namespace: str, redis_server: EmbeddedRedis,
        processes: list[OperatorProcess]) -> None:
    redis_url = redis_server.url
    queue = f"wake-{uuid.uuid4().hex[:6]}"
    operator = OperatorProcess(k8s, ("--namespace", namespace), log_name="operator-wake")
    processes.append(operator.start())
    apply(k8s, taskqueue("idle", namespace, redis_url, [queue], pollSeconds=POLL_S,
                         cooldownSeconds=0))
    wait_until("the Deployment at zero replicas",
               lambda: (deployment_replicas(k8s, namespace, "idle") == 0, None))
    # The first pass, then the one that follows subscribing (a catch-up for anything
    # published before): from here on the poll is up to a minute away.
    wait_until("two passes", lambda: (poll_passes(operator, namespace, "idle") >= 2, None))
    passes = poll_passes(operator, namespace, "idle")
    sent = time.monotonic()
    enqueue(redis_url, [Enqueue("noop", queue=queue)])
    wait_replicas(k8s, namespace, "idle", 1, timeout_s=WAKE_BOUND_S)
    took_s = time.monotonic() - sent
    assert took_s < POLL_S / 3, took_s
    assert poll_passes(operator, namespace, "idle") > passes


# -- shards ----------------------------------------------------------------------------------


def peering(k8s: Cluster, namespace: str, name: str) -> None:
    k8s.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "kopf.dev/v1", "kind": "KopfPeering",
        "metadata": {"name": name, "namespace": namespace}}))


def corral_finalizers(k8s: Cluster, namespace: str, name: str) -> list[str]:
    tq = get_json(k8s, "-n", namespace, "taskqueue", name) or {}
    return [f for f in tq.get("metadata", {}).get("finalizers", [])
            if f.startswith("corral.dev/")]


def test_two_shards_split_the_taskqueues_and_a_shard_fails_over_to_its_standby(
        k8s: Cluster, namespace: str, redis_server: EmbeddedRedis,
        processes: list[OperatorProcess]) -> None:
    redis_url = redis_server.url
    for i in range(2):
        peering(k8s, namespace, f"corral-shard-{i}-of-2")

    def shard(i: int, log: str) -> OperatorProcess:
        flags = ("--namespace", namespace, "--shard", f"{i}/2", "--peering", "corral",
                 "--peering-lifetime", "5")
        proc = OperatorProcess(k8s, flags, log_name=f"operator-{log}")
        processes.append(proc.start())
        return proc

    # Started one after the other: the first of shard 0 is its active replica.
    zero_active, zero_standby, one = shard(0, "shard0-a"), shard(0, "shard0-b"), shard(1, "shard1")
    names = [f"tq{i}" for i in range(8)]
    for name in names:
        apply(k8s, taskqueue(name, namespace, redis_url, [f"{namespace}-{name}"]))
    for name in names:
        wait_replicas(k8s, namespace, name, 0)
    owner = {name: shard_of(uid_of(k8s, namespace, name), 2) for name in names}
    assert set(owner.values()) == {0, 1}, owner  # eight uids: both shards have some

    def split() -> tuple[set[str], set[str], set[str]]:
        return (served(zero_active, namespace) if zero_active.process else set(),
                served(zero_standby, namespace), served(one, namespace))

    want_zero = {n for n in names if owner[n] == 0}
    want_one = set(names) - want_zero
    wait_until("each TaskQueue on its own shard",
               lambda: (split() == (want_zero, set(), want_one), split()))
    # One finalizer each, its shard's: shards do not take each other's away.
    for name in names:
        assert corral_finalizers(k8s, namespace, name) == [
            f"corral.dev/operator-shard-{owner[name]}-of-2"]

    # Shard 0's active replica dies: its standby takes shard 0 over, shard 1 carries on.
    zero_active.kill()
    moved = sorted(want_zero)[0]
    enqueue(redis_url, [Enqueue("noop", queue=f"{namespace}-{moved}") for _ in range(250)])
    wait_replicas(k8s, namespace, moved, 2, timeout_s=90)
    assert served(zero_standby, namespace) == want_zero
    assert served(one, namespace) == want_one
    stayed = sorted(want_one)[0]
    enqueue(redis_url, [Enqueue("noop", queue=f"{namespace}-{stayed}") for _ in range(250)])
    wait_replicas(k8s, namespace, stayed, 2, timeout_s=60)
    for name in names:
        assert corral_finalizers(k8s, namespace, name) == [
            f"corral.dev/operator-shard-{owner[name]}-of-2"]
