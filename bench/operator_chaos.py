"""The operator under faults, long form: one TaskQueue on the real test control
plane goes through an API server restart, a longer API server outage, a minute of
Redis partition, a minute of Redis refusing connections and an operator SIGKILL;
then two peered replicas lose their active one. The faults are those of
``tests/e2e/test_operator_chaos.py``, which runs them in a short form.

    python bench/operator_chaos.py [--quick] [--json PATH]
        [--redis-outage-s 60] [--apiserver-downtime-s 30] [--operator-down-s 10]
        [--peering-lifetime-s 20]

Each fault grows the backlog while it lasts (no workers run, so the right replica
count is known exactly). Printed per fault: how long it lasted, the lowest replica
count seen meanwhile (it must never drop), and the time from its end to the
expected count. At the end: the scale events against the real changes (they must
be equal: no flapping). Exit status 1 when any check fails.

Needs the binaries of scripts/k8s/build (or $CORRAL_K8S_BIN_DIR) and a redis-server.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# Added after start-up, when the standard library's `operator` is already imported,
# so the checkout's operator/ folder cannot shadow it.
sys.path.insert(0, str(REPO))

from corral.embedded import EmbeddedRedis  # noqa: E402
from tests.e2e.test_operator import OperatorProcess  # noqa: E402
from tests.e2e.test_operator_chaos import (  # noqa: E402
    ChaosRun,
    RedisCut,
    apiserver_restart,
    make_namespace,
    operator_kill,
    peering_failover,
    redis_outage,
    serves,
)
from tests.support.k8s import Cluster, apply_crds, ensure_built, k8s_bin_dir  # noqa: E402

INITIAL_TASKS = 300


def standalone_phase(k8s: Cluster, redis: EmbeddedRedis, proxy: RedisCut,
                     args: argparse.Namespace, processes: list[OperatorProcess]) -> ChaosRun:
    namespace = make_namespace(k8s, "chaos")
    operator = OperatorProcess(k8s, ("--namespace", namespace), log_name="operator")
    processes.append(operator.start())
    run = ChaosRun(k8s, namespace, "steady", redis.url, proxy)
    run.start(INITIAL_TASKS)
    print(f"{namespace}/{run.name}: {run.expected()} replicas for {run.tasks} tasks", flush=True)
    apiserver_restart(run, downtime_s=0)
    apiserver_restart(run, downtime_s=args.apiserver_downtime_s)
    redis_outage(run, args.redis_outage_s, mode="blackhole")
    redis_outage(run, args.redis_outage_s, mode="refuse")
    operator_kill(run, operator, down_s=args.operator_down_s)
    return run


def peering_phase(k8s: Cluster, redis: EmbeddedRedis, proxy: RedisCut,
                  args: argparse.Namespace, processes: list[OperatorProcess]) -> ChaosRun:
    namespace = make_namespace(k8s, "peers")
    k8s.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "kopf.dev/v1", "kind": "KopfPeering",
        "metadata": {"name": "corral", "namespace": namespace}}))
    flags = ("--namespace", namespace, "--peering", "corral",
             "--peering-lifetime", str(args.peering_lifetime_s))
    # Started one after the other: the first has the higher priority and is active.
    first = OperatorProcess(k8s, flags, log_name="operator-peer-a")
    processes.append(first.start())
    second = OperatorProcess(k8s, flags, log_name="operator-peer-b")
    processes.append(second.start())
    run = ChaosRun(k8s, namespace, "peered", redis.url, proxy)
    run.start(INITIAL_TASKS)
    if not serves(first, run) or serves(second, run):
        raise AssertionError("expected the first replica active and the second on standby")
    peering_failover(run, active=first, standby=second)
    run.figures[-1].fault += f" (lifetime {args.peering_lifetime_s}s)"
    return run


def checks(run: ChaosRun) -> list[str]:
    """What went wrong with this run, if anything."""
    problems = []
    if run.scale_events() != run.changes:
        problems.append(f"{run.name}: scale events {run.scale_events()} != real changes "
                        f"{run.changes}")
    for f in run.figures:
        if f.lowest is not None and f.lowest < f.before:
            problems.append(f"{run.name}: replicas dropped to {f.lowest} during {f.fault}")
    return problems


def report(runs: list[ChaosRun], problems: list[str]) -> dict[str, Any]:
    print("\n| fault | outage | replicas | lowest during | converged after |")
    print("|---|---:|---:|---:|---:|")
    for run in runs:
        for f in run.figures:
            outage = f"{f.outage_s:.1f} s" if f.outage_s else "instant"
            print(f"| {f.fault} | {outage} | {f.before} → {f.expected} | "
                  f"{f.lowest} | {f.convergence_s:.1f} s |")
    for run in runs:
        counts = run.event_counts()
        print(f"\n{run.namespace}/{run.name}: ScaledUp {counts.get('ScaledUp', 0)}, "
              f"ScaledDown {counts.get('ScaledDown', 0)}, real changes {len(run.changes)}; "
              f"RedisUnreachable {counts.get('RedisUnreachable', 0)}, "
              f"RedisReachable {counts.get('RedisReachable', 0)}")
    print("\nOK: converged after every fault, no drop, no flapping" if not problems
          else "\nFAILED:\n  " + "\n  ".join(problems))
    return {
        "faults": [asdict(f) for run in runs for f in run.figures],
        "events": {run.name: run.event_counts() for run in runs},
        "real_changes": {run.name: run.changes for run in runs},
        "problems": problems,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis-outage-s", type=float, default=60.0)
    parser.add_argument("--apiserver-downtime-s", type=float, default=30.0)
    parser.add_argument("--operator-down-s", type=float, default=10.0)
    parser.add_argument("--peering-lifetime-s", type=int, default=20)
    parser.add_argument("--quick", action="store_true",
                        help="the short form's durations (10 s, 5 s, 3 s, 5 s)")
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    args = parser.parse_args()
    if args.quick:
        args.redis_outage_s, args.apiserver_downtime_s = 10.0, 5.0
        args.operator_down_s, args.peering_lifetime_s = 3.0, 5

    ensure_built()
    started = time.monotonic()
    processes: list[OperatorProcess] = []
    with tempfile.TemporaryDirectory(prefix="corral-chaos-") as tmp:
        k8s = Cluster(Path(tmp) / "k8s", k8s_bin_dir())
        k8s.start()
        try:
            apply_crds(k8s)
            with EmbeddedRedis(appendonly=True) as redis:
                proxy = RedisCut(redis.port).start()
                try:
                    runs = [standalone_phase(k8s, redis, proxy, args, processes),
                            peering_phase(k8s, redis, proxy, args, processes)]
                    problems = [p for run in runs for p in checks(run)]
                    figures = report(runs, problems)  # reads the events: before the stop
                finally:
                    for proc in processes:
                        proc.stop()
                    proxy.close()
        finally:
            k8s.stop()
    figures["total_s"] = time.monotonic() - started
    print(f"total {figures['total_s']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
