"""The operator at platform scale: N TaskQueues (one queue each, all on one Redis)
watched by one operator process on the real test control plane.

    python bench/operator_scale.py [--taskqueues N] [--poll-seconds S] [--trials T]
        [--kinds burst,from_zero,scale_up] [--steady-s S] [--settle-s S] [--profile-s S]
        [--operator-arg=--shard=0/1 ...] [--json PATH]

Measured, in this order:

* steady state, over ``--steady-s`` seconds with every queue idle: the operator's
  CPU (``/proc/<pid>/stat``) and RSS (``/proc/<pid>/status``), the API server's own
  ``apiserver_request_total`` by verb (the control plane alone is measured first, so
  the operator's share can be told apart), and Redis commands from
  ``INFO commandstats`` (everything, script-internal calls included) and from
  ``CLIENT LIST`` ``tot-cmds`` (what the operator's connections sent);
* a py-spy profile of the operator over ``--profile-s`` seconds (when py-spy runs);
* per trial, a random phase against the poll each time:
  ``burst``: 500 tasks into the idle probe queue -> its Deployment's replicas patched;
  ``from_zero``: one task into the queue of an idle TaskQueue (trial i: ``tq-0000i``,
  so no trial waits for a scale-down) -> replicas 0 -> 1;
  ``scale_up``: 500 tasks into the probe queue while it already has one replica
  (the queue is not empty, so no wake-up is published: the poll path) -> 3 replicas.

Needs the binaries of scripts/k8s/build (or $CORRAL_K8S_BIN_DIR) and a redis-server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# Added after start-up, when the standard library's `operator` is already imported,
# so the checkout's operator/ folder cannot shadow it.
sys.path.insert(0, str(REPO))

import redis as redis_sync  # noqa: E402
from kubernetes_asyncio import client, config  # noqa: E402

from bench.operator_reaction import ControlPlane, bin_dir  # noqa: E402
from bench.profile import summarize  # noqa: E402
from corral.client import Client, Enqueue  # noqa: E402
from corral.embedded import EmbeddedRedis, free_port  # noqa: E402

CRD = REPO / "manifests" / "crds" / "taskqueues.corral.dev.yaml"
NAMESPACE = "scale"
PROBE = "probe"
BURST_TASKS = 500
TARGET_PER_REPLICA = 200
PROFILE_RATE_HZ = 100
# A trial starts at a random point of the poll, within this much of its start (a
# long pollSeconds would otherwise make each trial wait for up to a whole poll).
MAX_PHASE_S = 5.0
_REQUEST = re.compile(r'^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$')
_LABEL = re.compile(r'(\w+)="([^"]*)"')


# -- objects -----------------------------------------------------------------------------


def taskqueue(name: str, queue: str, redis_url: str, poll_s: int,
              probe: bool = False) -> dict[str, Any]:
    scaling: dict[str, Any] = {"pollSeconds": poll_s}
    if probe:
        scaling |= {"targetBacklogPerReplica": TARGET_PER_REPLICA, "maxReplicas": 10,
                    "scaleDownStabilizationSeconds": 0, "cooldownSeconds": 0}
    return {
        "apiVersion": "corral.dev/v1alpha1", "kind": "TaskQueue",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"redis": {"url": redis_url}, "queues": [{"name": queue}],
                 "worker": {"image": "example.invalid/corral-app:1", "app": "app:app"},
                 "scaling": scaling},
    }


def create_taskqueues(plane: ControlPlane, n: int, redis_url: str, poll_s: int) -> None:
    items = [taskqueue(PROBE, PROBE, redis_url, poll_s, probe=True)]
    items += [taskqueue(f"tq-{i:05d}", f"q-{i:05d}", redis_url, poll_s) for i in range(1, n)]
    for start in range(0, len(items), 200):  # a few requests, not one huge one
        plane.kubectl("apply", "-f", "-", stdin=json.dumps(
            {"apiVersion": "v1", "kind": "List", "items": items[start:start + 200]}))


def reconciled_count(plane: ControlPlane) -> int:
    listing = json.loads(plane.kubectl("get", "taskqueues", "-n", NAMESPACE, "-o", "json"))
    return sum(1 for tq in listing["items"]
               if (tq.get("status") or {}).get("observedGeneration") is not None)


def wait_all_reconciled(plane: ControlPlane, n: int, timeout_s: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        done = reconciled_count(plane)
        if done >= n:
            return time.monotonic() - started
        time.sleep(2)
    raise TimeoutError(f"only {reconciled_count(plane)}/{n} TaskQueues reconciled "
                       f"within {timeout_s:.0f} s")


# -- the operator process ----------------------------------------------------------------


class Operator:
    def __init__(self, plane: ControlPlane, log_path: Path, extra: list[str],
                 tracemalloc_out: Path | None = None) -> None:
        self.health_port = free_port()
        self.tracemalloc_out = tracemalloc_out
        env = {**plane.env(), "PYTHONUNBUFFERED": "1"}
        command = [sys.executable, "-m", "corral"]
        if tracemalloc_out is not None:
            command = [sys.executable, str(REPO / "bench" / "tracemalloc_run.py")]
            env["CORRAL_TRACEMALLOC_OUT"] = str(tracemalloc_out)
        with log_path.open("ab") as log:
            # cwd outside the checkout: its operator/ folder must not shadow the stdlib's.
            self.proc = subprocess.Popen(
                [*command, "operator", "--host", "127.0.0.1",
                 "--namespace", NAMESPACE, "--metrics-port", str(free_port()),
                 "--health-port", str(self.health_port), *extra],
                cwd=log_path.parent, env=env,
                stdout=log, stderr=subprocess.STDOUT)
        self.log_path = log_path

    def wait_healthy(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"operator exited: see {self.log_path}")
            with contextlib.suppress(OSError):
                url = f"http://127.0.0.1:{self.health_port}/healthz"
                with urllib.request.urlopen(url, timeout=1):
                    return
            time.sleep(0.2)
        raise RuntimeError("operator not healthy within 60 s")

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def allocations(self) -> dict[str, Any]:
        """Live allocations by file and line (``--tracemalloc`` only)."""
        if self.tracemalloc_out is None:
            return {}
        self.proc.send_signal(signal.SIGUSR2)
        for _ in range(600):  # a snapshot of a big heap takes a while
            time.sleep(0.5)
            with contextlib.suppress(OSError, ValueError):
                return dict(json.loads(self.tracemalloc_out.read_text()))
        return {"error": "no snapshot within 300 s"}

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- counters ----------------------------------------------------------------------------


def api_requests(plane: ControlPlane) -> Counter[tuple[str, str]]:
    """``apiserver_request_total`` summed by (verb, resource[/subresource])."""
    counts: Counter[tuple[str, str]] = Counter()
    for line in plane.kubectl("get", "--raw", "/metrics").splitlines():
        match = _REQUEST.match(line)
        if not match:
            continue
        labels = dict(_LABEL.findall(match["labels"]))
        resource = labels.get("resource", "")
        if labels.get("subresource"):
            resource += "/" + labels["subresource"]
        counts[(labels.get("verb", ""), resource)] += int(float(match["value"]))
    return counts


def by_verb(delta: Counter[tuple[str, str]], seconds: float) -> dict[str, float]:
    verbs: Counter[str] = Counter()
    for (verb, _), n in delta.items():
        verbs[verb] += n
    return {verb: round(n / seconds, 2) for verb, n in sorted(verbs.items()) if n}


WRITE_VERBS = ("POST", "PUT", "PATCH", "DELETE", "APPLY")
# What the operator writes; the API server's own lease renewals are left out.
OPERATOR_RESOURCES = ("deployments", "taskqueues", "events", "pods", "kopfpeerings")


# Commands a script cannot run: what clients sent. Everything else in the steady
# state is run by the depths script (the operator sends no plain reads).
_CLIENT_ONLY = ("evalsha", "evalsha_ro", "eval", "eval_ro", "fcall", "fcall_ro", "ping",
                "hello", "select", "subscribe", "ssubscribe", "psubscribe", "unsubscribe",
                "sunsubscribe", "punsubscribe", "multi", "exec")


def client_issued(stats_delta: dict[str, int]) -> int:
    return sum(n for name, n in stats_delta.items()
               if name in _CLIENT_ONLY or name.startswith(("script|", "client|", "info")))


@dataclass
class RedisCounters:
    conn: redis_sync.Redis

    def commandstats(self) -> dict[str, int]:
        info = self.conn.info("commandstats")
        return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()}


# -- steady state ------------------------------------------------------------------------


@dataclass
class Steady:
    seconds: float
    cpu_share: float
    rss_mib: float
    api_per_s: dict[str, float]
    api_writes_per_s: float
    api_writes_by_resource_per_s: dict[str, float]
    api_baseline_per_s: dict[str, float]
    redis_all_per_s: float
    redis_client_per_s: float
    redis_by_command_per_s: dict[str, float]
    per_taskqueue_per_poll: dict[str, float] = field(default_factory=dict)


def control_plane_alone(plane: ControlPlane, seconds: float) -> dict[str, float]:
    before = api_requests(plane)
    time.sleep(seconds)
    return by_verb(api_requests(plane) - before, seconds)


def measure_steady(plane: ControlPlane, op: Operator, counters: RedisCounters, n: int,
                   poll_s: int, seconds: float, baseline: dict[str, float]) -> Steady:
    api0, stats0 = api_requests(plane), counters.commandstats()
    cpu0, t0 = op.cpu_s(), time.monotonic()
    rss: list[int] = []
    while time.monotonic() - t0 < seconds:
        rss.append(op.rss_bytes())
        time.sleep(1)
    cpu1, t1 = op.cpu_s(), time.monotonic()
    api1, stats1 = api_requests(plane), counters.commandstats()
    wall = t1 - t0
    api = api1 - api0
    stats_delta = {k: v - stats0.get(k, 0) for k, v in stats1.items()}
    stats_delta["info"] = max(0, stats_delta.get("info", 0) - 1)  # the counter's own
    all_cmds = sum(stats_delta.values())
    sent = client_issued(stats_delta)
    polls = wall / poll_s * n
    return Steady(
        seconds=round(wall, 1),
        cpu_share=round((cpu1 - cpu0) / wall, 3),
        rss_mib=round(max(rss) / 2**20, 1),
        api_per_s=by_verb(api, wall),
        api_writes_per_s=round(sum(
            v for (verb, resource), v in api.items()
            if verb in WRITE_VERBS and resource.split("/")[0] in OPERATOR_RESOURCES) / wall, 2),
        api_writes_by_resource_per_s={f"{verb} {resource}": round(v / wall, 2)
                                      for (verb, resource), v in sorted(api.items())
                                      if verb in WRITE_VERBS and v},
        api_baseline_per_s=baseline,
        redis_all_per_s=round(all_cmds / wall, 1),
        redis_client_per_s=round(sent / wall, 1),
        redis_by_command_per_s={k: round(v / wall, 1) for k, v in
                                sorted(stats_delta.items(), key=lambda kv: -kv[1]) if v},
        per_taskqueue_per_poll={"all": round(all_cmds / polls, 2),
                                "client_issued": round(sent / polls, 3)},
    )


def profile(op: Operator, seconds: float, out: Path) -> dict[str, Any]:
    spy = Path(sys.executable).parent / "py-spy"
    if not spy.exists():
        return {"error": "py-spy is not installed next to this Python"}
    with (out.parent / "py-spy.log").open("ab") as log:
        proc = subprocess.Popen(
            [str(spy), "record", "--pid", str(op.proc.pid), "--rate", str(PROFILE_RATE_HZ),
             "--format", "raw", "--nolineno", "--output", str(out)],
            stdout=log, stderr=subprocess.STDOUT)
    time.sleep(seconds)
    proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
    lines = out.read_text().splitlines() if out.exists() else []
    return {**summarize(lines), "seconds": seconds, "rate_hz": PROFILE_RATE_HZ}


# -- trials ------------------------------------------------------------------------------


class Probe:
    def __init__(self, apps: client.AppsV1Api, tasks: Client, redis_url: str,
                 poll_s: int) -> None:
        self.apps = apps
        self.tasks = tasks
        self.redis_url = redis_url
        self.poll_s = poll_s
        self.zero_trials = 0

    async def replicas(self, taskqueue: str = PROBE) -> int:
        d = await self.apps.read_namespaced_deployment(f"{taskqueue}-worker", NAMESPACE)
        return int(d.spec.replicas or 0)

    async def wait(self, check: Callable[[int], bool], timeout_s: float,
                   interval_s: float = 0.01, taskqueue: str = PROBE) -> float:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if check(await self.replicas(taskqueue)):
                return time.monotonic()
            await asyncio.sleep(interval_s)
        raise TimeoutError(f"{taskqueue} replicas did not change within {timeout_s} s")

    async def enqueue(self, n: int, queue: str = PROBE) -> float:
        await self.tasks.enqueue_many([Enqueue("noop", queue=queue) for _ in range(n)])
        return time.monotonic()

    async def reset(self) -> None:
        conn = redis_sync.Redis.from_url(self.redis_url)
        try:
            conn.delete(*conn.keys("corral:{probe}:*") or ["-"])
        finally:
            conn.close()
        await self.wait(lambda r: r == 0, timeout_s=60 + 4 * self.poll_s, interval_s=0.05)

    async def phase(self) -> None:
        await asyncio.sleep(random.uniform(0, min(self.poll_s, MAX_PHASE_S)))

    async def burst(self) -> float:
        await self.reset()
        await self.phase()
        sent = await self.enqueue(BURST_TASKS)
        return await self.wait(lambda r: r > 0, timeout_s=30 + 4 * self.poll_s) - sent

    async def from_zero(self) -> float:
        """A TaskQueue of its own per trial, idle since it was created."""
        self.zero_trials += 1
        taskqueue, queue = f"tq-{self.zero_trials:05d}", f"q-{self.zero_trials:05d}"
        if await self.replicas(taskqueue) != 0:
            raise TimeoutError(f"{taskqueue} is not at zero replicas")
        await self.phase()
        sent = await self.enqueue(1, queue)
        return await self.wait(lambda r: r >= 1, timeout_s=30 + 4 * self.poll_s,
                               taskqueue=taskqueue) - sent

    async def scale_up(self) -> float:
        await self.reset()
        await self.enqueue(1)
        await self.wait(lambda r: r == 1, timeout_s=30 + 4 * self.poll_s)
        await self.phase()
        sent = await self.enqueue(BURST_TASKS)
        return await self.wait(lambda r: r >= 3, timeout_s=30 + 4 * self.poll_s) - sent


async def run_trials(plane: ControlPlane, redis_url: str, poll_s: int,
                     trials: int, kinds: list[str]) -> dict[str, list[float]]:
    configuration = client.Configuration()
    await config.load_kube_config(config_file=str(plane.kubeconfig),
                                  client_configuration=configuration)
    results: dict[str, list[float]] = {kind: [] for kind in kinds}
    async with client.ApiClient(configuration) as api, Client.from_url(redis_url) as tasks:
        probe = Probe(client.AppsV1Api(api), tasks, redis_url, poll_s)
        if "burst" in kinds or "scale_up" in kinds:
            await probe.burst()  # warm-up
        for kind, trial in (("burst", probe.burst), ("from_zero", probe.from_zero),
                            ("scale_up", probe.scale_up)):
            if kind not in kinds:
                continue
            for i in range(trials):
                try:
                    seconds = await trial()
                except TimeoutError as exc:  # counted as a miss, and the run goes on
                    seconds = float("inf")
                    print(f"{kind} {i + 1:3d}: {exc}", flush=True)
                results[kind].append(seconds)
                print(f"{kind} {i + 1:3d}: {seconds * 1000:8.1f} ms", flush=True)
    return results


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))], 3)

    return {"p50_s": at(0.5), "p99_s": at(0.99), "max_s": round(ordered[-1], 3),
            "min_s": round(ordered[0], 3),
            "missed": sum(1 for v in values if v == float("inf"))}


# -- main --------------------------------------------------------------------------------


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    plane = ControlPlane(tmp / "k8s", bin_dir())
    plane.up()
    op: Operator | None = None
    try:
        with EmbeddedRedis(extra_args=("--maxclients", "20000")) as server:
            plane.kubectl("apply", "-f", str(CRD))
            plane.kubectl("wait", "--for=condition=Established", "crd/taskqueues.corral.dev",
                          "--timeout=60s")
            plane.kubectl("create", "namespace", NAMESPACE)
            baseline = control_plane_alone(plane, min(args.steady_s, 30))
            op = Operator(plane, tmp / "operator.log", args.operator_arg,
                          tmp / "tracemalloc.json" if args.tracemalloc else None)
            op.wait_healthy()
            started = time.monotonic()
            create_taskqueues(plane, args.taskqueues, server.url, args.poll_seconds)
            ready_s = wait_all_reconciled(plane, args.taskqueues, timeout_s=1800)
            print(f"{args.taskqueues} TaskQueues reconciled {time.monotonic() - started:.0f} s "
                  f"after creation", flush=True)
            # Start-up work settles.
            time.sleep(args.settle_s if args.settle_s is not None
                       else max(10, 3 * args.poll_seconds))
            conn = redis_sync.Redis.from_url(server.url)
            steady = measure_steady(plane, op, RedisCounters(conn), args.taskqueues,
                                    args.poll_seconds, args.steady_s, baseline)
            print(json.dumps(steady.__dict__, indent=1), flush=True)
            allocations = op.allocations()
            raw = args.json.with_suffix(".profile.txt") if args.json else tmp / "profile.txt"
            prof = profile(op, args.profile_s, raw) if args.profile_s else {}
            trials = asyncio.run(run_trials(plane, server.url, args.poll_seconds, args.trials,
                                            args.kinds.split(",")))
            conn.close()
    finally:
        if op is not None:
            op.stop()
        plane.down()
    return {
        "taskqueues": args.taskqueues, "poll_seconds": args.poll_seconds, "kinds": args.kinds,
        "operator_args": args.operator_arg, "ready_s": round(ready_s, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "steady": steady.__dict__, "profile": prof, "allocations": allocations,
        "trials": {kind: {"n": len(v), **percentiles(v), "values_s": [round(x, 4) for x in v]}
                   for kind, v in trials.items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--taskqueues", type=int, default=100)
    parser.add_argument("--poll-seconds", type=int, default=1)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--kinds", default="burst,from_zero,scale_up",
                        help="trials to run, comma-separated (default: all three)")
    parser.add_argument("--steady-s", type=float, default=60)
    parser.add_argument("--settle-s", type=float, default=None,
                        help="wait after start-up (default: 3 polls, at least 10 s)")
    parser.add_argument("--profile-s", type=float, default=30, help="0: no profile")
    parser.add_argument("--operator-arg", action="append", default=[],
                        help="extra `corral operator` flag (repeatable)")
    parser.add_argument("--label", default="", help="a name for this run in the JSON")
    parser.add_argument("--tracemalloc", action="store_true",
                        help="trace the operator's allocations (slows it: CPU not comparable)")
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="corral-bench-scale-") as tmp:
        figures = run(args, Path(tmp))
    figures["label"] = args.label
    figures["load_average_before"] = [round(x, 2) for x in load_before]
    trials = figures["trials"]
    print(f"\n{args.taskqueues} TaskQueues, pollSeconds {args.poll_seconds}: "
          f"CPU {figures['steady']['cpu_share']:.0%} of a core, "
          f"RSS {figures['steady']['rss_mib']} MiB, "
          f"API writes {figures['steady']['api_writes_per_s']}/s, "
          f"Redis {figures['steady']['redis_all_per_s']}/s "
          f"(client-issued {figures['steady']['redis_client_per_s']}/s); "
          + "; ".join(f"{k} p50 {v['p50_s']} s p99 {v['p99_s']} s" for k, v in trials.items())
          + f"; load average {figures['load_average']}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
