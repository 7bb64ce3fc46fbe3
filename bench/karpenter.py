"""The operator with a real node autoscaler (Karpenter's kwok provider) on the test
control plane, measured:

    python bench/karpenter.py [--trials 10] [--json PATH]

``--json bench/karpenter.json`` keeps the figures where ``bench/run`` finds them for
docs/benchmarks.md (section "Operator with Karpenter").

1. Backlog -> first task on a new node, ``--trials`` times: a NodePool with no
   nodes, a TaskQueue at zero replicas, 100 tasks enqueued; the figure is the time
   from the enqueue to the first task's own start record. It covers the operator's
   poll (pollSeconds 1), the scheduler finding no node, Karpenter's batch window
   (BATCH_IDLE_DURATION 1s, BATCH_MAX_DURATION 10s), the node's launch and
   registration (kwok: no boot time), and the worker process starting (the stand-in
   for the container, about a second of Python start-up).
2. A load drop while long tasks run (tests/e2e/test_karpenter.py's scenario: 4 long
   tasks and 32 short ones, 6 tasks per replica, each worker running one task and
   prefetching one; the long tasks run on for 20 s after the scale-down), with the
   busy-pod protection and without it: tasks interrupted (from the tasks' own
   records), nodes at the peak and once the tasks are done, lowest replica count.

Needs the binaries of scripts/k8s/build (or $CORRAL_K8S_BIN_DIR) and a redis-server.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# Added after start-up, when the standard library's `operator` is already imported,
# so the checkout's operator/ folder cannot shadow it.
sys.path.insert(0, str(REPO))

import redis  # noqa: E402

from bench import stats  # noqa: E402
from corral.client import Enqueue  # noqa: E402
from corral.embedded import EmbeddedRedis  # noqa: E402
from tests.e2e.test_karpenter import (  # noqa: E402
    WORKER_ARGS,
    Records,
    karpenter_taskqueue,
    load_drops,
)
from tests.e2e.test_operator import (  # noqa: E402
    OperatorProcess,
    apply,
    enqueue,
    status,
    wait_until,
)
from tests.support.k8s import (  # noqa: E402
    Cluster,
    Karpenter,
    apply_crds,
    ensure_built,
    k8s_bin_dir,
)
from tests.support.podworkers import PodWorkers  # noqa: E402

TASKS = 100


def flush(url: str) -> None:
    conn = redis.Redis.from_url(url)
    try:
        conn.flushall()
    finally:
        conn.close()


def make_namespace(k8s: Cluster, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    k8s.kubectl("create", "namespace", name)
    return name


def pool_ready(k8s: Cluster, pool: str) -> tuple[bool, Any]:
    out = k8s.kubectl("get", "nodepool", pool, "-o", "json", check=False)
    if out.returncode != 0:
        return False, out.stderr
    conditions = json.loads(out.stdout).get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions), conditions


def first_task_trial(k8s: Cluster, karpenter: Karpenter, redis_url: str) -> dict[str, float]:
    namespace, pool = make_namespace(k8s, "kb"), f"kb-{uuid.uuid4().hex[:6]}"
    queue, record = f"q-{namespace}", f"rec-{namespace}"
    try:
        karpenter.node_pool(pool, consolidate_after="5s")
        wait_until("NodePool Ready", lambda: pool_ready(k8s, pool), timeout_s=60)
        apply(k8s, karpenter_taskqueue("first", namespace, redis_url, queue, karpenter, pool,
                                       protect=True))
        wait_until("at zero", lambda: ("replicas" in status(k8s, namespace, "first"), None))
        with PodWorkers(k8s, namespace, "first", redis_url,
                        ["--queues", queue, *WORKER_ARGS]) as pods:
            enqueued_ms, enqueued_s = time.time() * 1000, time.monotonic()
            enqueue(redis_url, [Enqueue("tracked", kwargs={"record": record,
                                                           "task_key": f"t{i}"}, queue=queue)
                                for i in range(TASKS)])
            records = Records(redis_url, record)
            first_ms = wait_until("the first task", lambda: (
                (ms := records.first_start_ms()) is not None, ms), timeout_s=120)
            nodes = len(karpenter.nodes(pool))
            running_s = min(pods.started.values()) - enqueued_s
        return {"first_task_s": (first_ms - enqueued_ms) / 1000,
                "first_pod_running_s": running_s, "nodes": nodes}
    finally:
        k8s.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        karpenter.delete_pool(pool)


def load_drop_run(k8s: Cluster, karpenter: Karpenter, redis_url: str,
                  protect: bool) -> dict[str, Any]:
    namespace, pool = make_namespace(k8s, "kd"), f"kd-{uuid.uuid4().hex[:6]}"
    try:
        outcome = load_drops(k8s, karpenter, namespace, redis_url, pool, protect)
        return {"protect": protect, **asdict(outcome)}
    finally:
        k8s.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        karpenter.delete_pool(pool)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    args = parser.parse_args()
    ensure_built()
    started = time.monotonic()
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="corral-karpenter-") as tmp:
        k8s = Cluster(Path(tmp) / "k8s", k8s_bin_dir())
        k8s.start()
        operator: OperatorProcess | None = None
        try:
            k8s.start_karpenter()
            karpenter = Karpenter(k8s)
            apply_crds(k8s)
            operator = OperatorProcess(k8s).start()
            with EmbeddedRedis() as server:
                trials = []
                for i in range(args.trials):
                    flush(server.url)
                    trials.append(first_task_trial(k8s, karpenter, server.url))
                    print(f"trial {i + 1}: {trials[-1]}", flush=True)
                firsts = [t["first_task_s"] for t in trials]
                figures["first_task"] = {
                    "trials": trials, "median_s": stats.median(firsts),
                    "p90_s": stats.percentile(firsts, 90),
                    "batch_idle": "1s", "batch_max": "10s"}
                print(f"backlog -> first task on a new node: median "
                      f"{figures['first_task']['median_s']:.1f} s, p90 "
                      f"{figures['first_task']['p90_s']:.1f} s over {len(firsts)} trials")
                for protect in (True, False):
                    flush(server.url)
                    run = load_drop_run(k8s, karpenter, server.url, protect)
                    figures.setdefault("load_drop", []).append(run)
                    print(f"load drop, protection {'on' if protect else 'off'}: {run}",
                          flush=True)
        finally:
            if operator is not None:
                operator.stop()
            k8s.stop()
    figures["total_s"] = time.monotonic() - started
    figures["measured"] = time.strftime("%Y-%m-%d", time.gmtime())
    print(f"total {figures['total_s']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
