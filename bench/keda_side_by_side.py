"""Corral's TaskQueue and KEDA side by side: the same control plane, the same Redis,
the same worker Deployment shape and the same load, scaled once by Corral's operator
and once by a KEDA ScaledObject (the ``redis`` list-length scaler) with the
controller-manager's HorizontalPodAutoscaler:

    python bench/keda_side_by_side.py [--trials N] [--scalers corral-default,...]
        [--hpa-sync-period 15s] [--json PATH]

KEDA (operator and metrics adapter) is built from its Go module by
``scripts/k8s/build-keda`` (run here when the binaries are missing); its adapter is
registered as the ``v1beta1.external.metrics.k8s.io`` APIService through the API
server's aggregation layer. Worker pods are kwok pods: real ``corral worker``
processes follow them (tests/support/podworkers.py), so tasks really run and a
scale-down really stops a worker (SIGTERM, ``--grace-seconds 2``).

Every trial gets a fresh namespace, queue, scaler object and Deployment at zero
replicas. Scenarios (``TARGET`` tasks per replica, at most ``MAX_REPLICAS``):

* ``burst``: 36 tasks into an idle queue: enqueue -> replicas >= 1 (scale from
  zero) and -> replicas == 6 (reaction to the whole load), from the Deployment's
  ``spec.replicas`` read every 50 ms;
* ``steady``: 3 one-second tasks per second (3 workers' worth) for ``WARM_S`` then
  ``STEADY_S`` seconds: replica changes during the second part (flapping);
* ``drop``: 4 long tasks and 32 short ones (as bench/karpenter.py); once the short
  ones are done the load drops while the long ones run on for ``HOLD_S``: tasks
  interrupted (from the tasks' own records), lowest replica count meanwhile.

KEDA watches one list: the default priority's ready list (``corral:{Q}:ready:0``);
tasks running (leased), scheduled or at other priorities are invisible to it.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import random
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# Added after start-up, when the standard library's `operator` is already imported,
# so the checkout's operator/ folder cannot shadow it.
sys.path.insert(0, str(REPO))

from bench import stats  # noqa: E402
from corral.client import Enqueue  # noqa: E402
from corral.embedded import EmbeddedRedis, free_port  # noqa: E402
from corral.keys import DEFAULT_PREFIX, queue_keys  # noqa: E402
from tests.e2e.test_karpenter import Records, long_and_short, release  # noqa: E402
from tests.e2e.test_operator import OperatorProcess, apply, enqueue  # noqa: E402
from tests.support.k8s import (  # noqa: E402
    CHART_CRDS,
    COMPONENTS,
    Cluster,
    ensure_built,
    k8s_bin_dir,
    wait_until,
)
from tests.support.podworkers import PodWorkers  # noqa: E402

NAME = "bench"  # TaskQueue / ScaledObject name; the Deployment is NAME-worker
TARGET = 2  # tasks per replica, both scalers
MAX_REPLICAS = 6
BURST_TASKS = 36
STEADY_RATE_PER_S = 3.0
STEADY_TASK_S = 1.0
WARM_S = 40.0
STEADY_S = 60.0
HOLD_S = 30.0
GRACE_S = 2
# Corral's default lease: a shorter one expires on this busy shared machine now and then,
# and the task runs again elsewhere, which would count as an interruption.
LEASE_S = 30
WORKER_ARGS = ["--concurrency", "1", "--batch-size", "1", "--lease-seconds", str(LEASE_S),
               "--grace-seconds", str(GRACE_S)]
KEDA_NAMESPACE = "keda"
ADAPTER_SERVICE = "keda-metrics-apiserver"


# -- the scalers' settings ------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    name: str
    kind: str  # "corral" or "keda"
    poll_s: int  # Corral pollSeconds / KEDA pollingInterval
    cooldown_s: int  # Corral cooldownSeconds / KEDA cooldownPeriod (last replica -> 0)
    scale_down_window_s: int  # Corral scaleDownStabilizationSeconds / HPA scaleDown window

    def describe(self) -> str:
        if self.kind == "corral":
            return (f"pollSeconds {self.poll_s}, scaleDownStabilizationSeconds "
                    f"{self.scale_down_window_s}, cooldownSeconds {self.cooldown_s}")
        return (f"pollingInterval {self.poll_s}, cooldownPeriod {self.cooldown_s}, HPA "
                f"scaleDown stabilizationWindowSeconds {self.scale_down_window_s}")


SETTINGS = {s.name: s for s in (
    # Both projects' defaults (Corral's mirror KEDA's cooldown).
    Setting("corral-default", "corral", 5, 300, 60),
    Setting("keda-default", "keda", 30, 300, 300),
    # Tuned: what a user sets on the object itself (the HPA's own sync period is a
    # controller-manager flag, the same for both KEDA rows).
    Setting("corral-tuned", "corral", 1, 5, 5),
    Setting("keda-tuned", "keda", 1, 5, 5),
)}


# -- API access -------------------------------------------------------------------------------


class Api:
    """Direct HTTPS to the API server with the admin client certificate: a read takes
    milliseconds, where a kubectl call takes a few hundred."""

    def __init__(self, k8s: Cluster) -> None:
        pki = k8s.state_dir / "pki"
        self.ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        self.ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        self.server = k8s.server

    def get(self, path: str) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(self.server + path, timeout=5, context=self.ctx) as r:
                return json.loads(r.read())  # type: ignore[no-any-return]
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise


class ReplicaTrace:
    """``spec.replicas`` of one Deployment, read every 50 ms on a thread; keeps every
    change as (monotonic time, replicas)."""

    def __init__(self, api: Api, namespace: str, deployment: str) -> None:
        self.api = api
        self.path = f"/apis/apps/v1/namespaces/{namespace}/deployments/{deployment}"
        self.changes: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> ReplicaTrace:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                d = self.api.get(self.path)
            except OSError:
                d = None
            if d is not None:
                replicas = int(d["spec"].get("replicas", 0))
                if not self.changes or self.changes[-1][1] != replicas:
                    self.changes.append((time.monotonic(), replicas))
            self._stop.wait(0.05)

    @property
    def replicas(self) -> int | None:
        return self.changes[-1][1] if self.changes else None

    def wait(self, check: Callable[[int], bool], timeout_s: float) -> float | None:
        """Time of the first change (since the trace began) for which ``check`` holds."""
        deadline = time.monotonic() + timeout_s
        seen = 0
        while time.monotonic() < deadline:
            for t, r in self.changes[seen:]:
                if check(r):
                    return t
            seen = len(self.changes)
            time.sleep(0.02)
        return None

    def changes_between(self, start: float, end: float) -> int:
        return sum(1 for t, _ in self.changes[1:] if start <= t < end)

    def lowest_between(self, start: float, end: float) -> int:
        before = [r for t, r in self.changes if t < start][-1:]
        during = [r for t, r in self.changes if start <= t < end]
        return min(before + during)


# -- KEDA on the control plane ------------------------------------------------------------------


def keda_bin_dir() -> Path:
    out = subprocess.run([str(REPO / "scripts" / "k8s" / "build-keda"), "--print-bin-dir"],
                         check=True, capture_output=True, text=True)
    return Path(out.stdout.strip())


def make_certs(out: Path) -> None:
    """One CA and one certificate for KEDA's operator (gRPC metrics service) and its
    adapter (gRPC client, and the extension API server the aggregator calls)."""
    out.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*argv: str) -> None:
        subprocess.run(argv, cwd=out, check=True, capture_output=True)

    run("openssl", "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "30",
        "-subj", "/CN=keda-bench-ca", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature")
    (out / "tls.ext").write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth,clientAuth\n"
        f"subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:{ADAPTER_SERVICE}.{KEDA_NAMESPACE}.svc\n")
    run("openssl", "req", *ec, "-keyout", "tls.key", "-out", "tls.csr", "-subj", "/CN=keda")
    run("openssl", "x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "30", "-out", "tls.crt", "-extfile", "tls.ext")


def metrics_rbac_and_apiservice(adapter_port: int, ca_bundle: str) -> list[dict[str, Any]]:
    """What KEDA's config/metrics-server installs, pointed at a local adapter: an
    ExternalName Service (no kube-proxy here to reach a ClusterIP, and EndpointSlices
    may not hold loopback addresses), the APIService, and the HPA controller's right
    to read external metrics."""
    return [
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": ADAPTER_SERVICE, "namespace": KEDA_NAMESPACE},
         "spec": {"type": "ExternalName", "externalName": "127.0.0.1"}},
        {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
         "metadata": {"name": "v1beta1.external.metrics.k8s.io"},
         "spec": {"service": {"name": ADAPTER_SERVICE, "namespace": KEDA_NAMESPACE,
                              "port": adapter_port},
                  "group": "external.metrics.k8s.io", "version": "v1beta1",
                  "caBundle": ca_bundle,
                  "groupPriorityMinimum": 100, "versionPriority": 100}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": "keda-external-metrics-reader"},
         "rules": [{"apiGroups": ["external.metrics.k8s.io"], "resources": ["*"],
                    "verbs": ["get", "list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "keda-hpa-controller-external-metrics"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": "keda-external-metrics-reader"},
         "subjects": [{"kind": "ServiceAccount", "name": "horizontal-pod-autoscaler",
                       "namespace": "kube-system"}]},
    ]


class Keda:
    """KEDA's operator and metrics adapter as local processes against the cluster
    (the admin kubeconfig stands in for their service accounts)."""

    def __init__(self, k8s: Cluster, bins: Path, workdir: Path) -> None:
        self.k8s, self.bins, self.workdir = k8s, bins, workdir
        self.certs = workdir / "certs"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self) -> None:
        make_certs(self.certs)
        crds = self.bins.parent / "share" / "crds"
        self.k8s.kubectl("apply", "--server-side", "-f", str(crds))
        self.k8s.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f",
                         str(crds))
        self.k8s.kubectl("create", "namespace", KEDA_NAMESPACE)
        env = {**self.k8s.env(), "WATCH_NAMESPACE": "", "POD_NAMESPACE": KEDA_NAMESPACE,
               "KEDA_CLUSTER_OBJECT_NAMESPACE": KEDA_NAMESPACE}
        grpc_port, adapter_port, health_port = free_port(), free_port(), free_port()
        self._spawn("keda-operator", env, [
            str(self.bins / "keda"), "--leader-elect=false",
            f"--metrics-bind-address=127.0.0.1:{free_port()}",
            f"--health-probe-bind-address=127.0.0.1:{health_port}",
            f"--metrics-service-bind-address=127.0.0.1:{grpc_port}",
            f"--cert-dir={self.certs}", "--enable-cert-rotation=false",
            "--zap-log-level=info"])
        kubeconfig = self.k8s.kubeconfig
        self._spawn("keda-adapter", env, [
            str(self.bins / "keda-adapter"), f"--secure-port={adapter_port}",
            "--bind-address=127.0.0.1", f"--cert-dir={self.certs}",
            f"--tls-cert-file={self.certs / 'tls.crt'}",
            f"--tls-private-key-file={self.certs / 'tls.key'}",
            f"--lister-kubeconfig={kubeconfig}", f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            f"--metrics-service-address=127.0.0.1:{grpc_port}",
            # Its own /metrics: the adapter binds it on every interface (no host flag).
            f"--port={free_port()}", "--zap-log-level=info"])
        ca = base64.b64encode((self.certs / "ca.crt").read_bytes()).decode()
        for obj in metrics_rbac_and_apiservice(adapter_port, ca):
            apply(self.k8s, obj)
        wait_until("the external metrics APIService Available", self._available,
                   timeout_s=120, interval_s=1)

    def _spawn(self, name: str, env: dict[str, str], argv: list[str]) -> None:
        with (self.k8s.state_dir / "logs" / f"{name}.log").open("ab") as log:
            self.procs[name] = subprocess.Popen(argv, env=env, stdout=log,
                                                stderr=subprocess.STDOUT)

    def _available(self) -> tuple[bool, Any]:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited {proc.returncode}: see "
                                   f"{self.k8s.state_dir / 'logs' / name}.log")
        out = self.k8s.kubectl("get", "apiservice", "v1beta1.external.metrics.k8s.io",
                               "-o", "json", check=False)
        if out.returncode != 0:
            return False, out.stderr
        conds = json.loads(out.stdout).get("status", {}).get("conditions") or []
        return any(c["type"] == "Available" and c["status"] == "True" for c in conds), conds

    def stop(self) -> None:
        # The APIService first: an unavailable one makes discovery fail for everyone.
        self.k8s.kubectl("delete", "apiservice", "v1beta1.external.metrics.k8s.io",
                         "--ignore-not-found", check=False)
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


# -- the objects under test --------------------------------------------------------------------


def worker_deployment(namespace: str) -> dict[str, Any]:
    """The worker Deployment a KEDA user writes: the same pod labels as a TaskQueue's
    (PodWorkers follows them), zero replicas to start."""
    labels = {"corral.dev/taskqueue": NAME}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": f"{NAME}-worker", "namespace": namespace},
        "spec": {"replicas": 0, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels}, "spec": {
                     "terminationGracePeriodSeconds": GRACE_S + 1,
                     "containers": [{"name": "worker", "image": "example.invalid/corral-app:1"}],
                 }}},
    }


def scaled_object(namespace: str, setting: Setting, redis_port: int,
                  queue: str) -> dict[str, Any]:
    return {
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
        "metadata": {"name": NAME, "namespace": namespace},
        "spec": {
            "scaleTargetRef": {"name": f"{NAME}-worker"},
            "pollingInterval": setting.poll_s, "cooldownPeriod": setting.cooldown_s,
            "minReplicaCount": 0, "maxReplicaCount": MAX_REPLICAS,
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": {"scaleDown": {
                "stabilizationWindowSeconds": setting.scale_down_window_s}}}},
            "triggers": [{"type": "redis", "metadata": {
                "address": f"127.0.0.1:{redis_port}",
                "listName": queue_keys(queue, DEFAULT_PREFIX).ready[0],
                "listLength": str(TARGET), "activationListLength": "0"}}],
        },
    }


def taskqueue(namespace: str, setting: Setting, redis_url: str, queue: str) -> dict[str, Any]:
    return {
        "apiVersion": "corral.dev/v1alpha1", "kind": "TaskQueue",
        "metadata": {"name": NAME, "namespace": namespace},
        "spec": {
            "redis": {"url": redis_url},
            "queues": [{"name": queue}],
            "worker": {"image": "example.invalid/corral-app:1", "app": "tests.apps.basic:app",
                       "concurrency": 1, "batchSize": 1, "leaseSeconds": LEASE_S,
                       "graceSeconds": GRACE_S},
            "scaling": {"pollSeconds": setting.poll_s, "targetBacklogPerReplica": TARGET,
                        "maxReplicas": MAX_REPLICAS,
                        "scaleDownStabilizationSeconds": setting.scale_down_window_s,
                        "cooldownSeconds": setting.cooldown_s},
        },
    }


@dataclass
class Trial:
    k8s: Cluster
    api: Api
    setting: Setting
    redis_url: str
    namespace: str = field(default_factory=lambda: f"kb-{uuid.uuid4().hex[:8]}")

    @property
    def queue(self) -> str:
        return f"q-{self.namespace}"

    @property
    def record(self) -> str:
        return f"rec-{self.namespace}"

    def redis_port(self) -> int:
        return int(self.redis_url.rsplit(":", 1)[1].split("/")[0])

    @contextmanager
    def running(self) -> Iterator[tuple[ReplicaTrace, PodWorkers]]:
        """The scaler object and its Deployment at zero, worker processes following the
        pods, and the replica trace; waits a random part of one poll interval, so the
        load lands at a random phase of the scaler's poll."""
        self.k8s.kubectl("create", "namespace", self.namespace)
        try:
            if self.setting.kind == "corral":
                apply(self.k8s, taskqueue(self.namespace, self.setting, self.redis_url,
                                          self.queue))
            else:
                apply(self.k8s, worker_deployment(self.namespace))
                apply(self.k8s, scaled_object(self.namespace, self.setting, self.redis_port(),
                                              self.queue))
            with ReplicaTrace(self.api, self.namespace, f"{NAME}-worker") as trace:
                wait_until("the Deployment at 0", lambda: (trace.replicas == 0, trace.replicas))
                if self.setting.kind == "keda":
                    wait_until("the ScaledObject Ready", self._scaled_object_ready)
                with PodWorkers(self.k8s, self.namespace, NAME, self.redis_url,
                                ["--queues", self.queue, *WORKER_ARGS]) as pods:
                    time.sleep(random.uniform(0, self.setting.poll_s))
                    yield trace, pods
        finally:
            self.k8s.kubectl("delete", "namespace", self.namespace, "--wait=false",
                             check=False)

    def _scaled_object_ready(self) -> tuple[bool, Any]:
        so = self.api.get(f"/apis/keda.sh/v1alpha1/namespaces/{self.namespace}"
                          f"/scaledobjects/{NAME}") or {}
        conds = so.get("status", {}).get("conditions") or []
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conds), conds


def timeout_for(setting: Setting) -> float:
    return 60.0 + 4 * setting.poll_s


def burst(trial: Trial) -> dict[str, float | None]:
    with trial.running() as (trace, _pods):
        gate = f"{trial.record}:burst-gate"  # see release()
        sent = time.monotonic()
        enqueue(trial.redis_url, [
            Enqueue("gated", kwargs={"record": trial.record, "task_key": f"t{i}", "gate": gate},
                    queue=trial.queue) for i in range(BURST_TASKS)])
        first = trace.wait(lambda r: r >= 1, timeout_for(trial.setting))
        full = trace.wait(lambda r: r >= MAX_REPLICAS, timeout_for(trial.setting))
        release(trial.redis_url, trial.record, "burst")
        return {"from_zero_s": None if first is None else first - sent,
                "reaction_s": None if full is None else full - sent}


class Producer:
    """Enqueues ``rate`` one-second tasks per second on a thread."""

    def __init__(self, redis_url: str, queue: str, record: str, rate_per_s: float) -> None:
        self.redis_url, self.queue, self.record = redis_url, queue, record
        self.interval_s = 1 / rate_per_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.sent = 0

    def __enter__(self) -> Producer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _loop(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            enqueue(self.redis_url, [Enqueue("tracked", kwargs={
                "record": self.record, "task_key": f"s{self.sent}", "sleep_s": STEADY_TASK_S},
                queue=self.queue)])
            self.sent += 1
            next_at += self.interval_s
            self._stop.wait(max(0.0, next_at - time.monotonic()))


def steady(trial: Trial) -> dict[str, Any]:
    with trial.running() as (trace, _pods), \
            Producer(trial.redis_url, trial.queue, trial.record, STEADY_RATE_PER_S) as producer:
        time.sleep(WARM_S)
        start = time.monotonic()
        time.sleep(STEADY_S)
        end = time.monotonic()
        in_window = [r for t, r in trace.changes if start <= t < end]
        before = [r for t, r in trace.changes if t < start][-1:]
        seen = before + in_window
        return {"changes": trace.changes_between(start, end),
                "min_replicas": min(seen), "max_replicas": max(seen),
                "finished": Records(trial.redis_url, trial.record).finished(),
                "sent": producer.sent}


def drop(trial: Trial) -> dict[str, Any]:
    records = Records(trial.redis_url, trial.record)
    with trial.running() as (trace, pods):
        enqueue(trial.redis_url, long_and_short(trial.queue, trial.record, long_tasks=4,
                                                short_tasks=32))
        trace.wait(lambda r: r >= MAX_REPLICAS, timeout_for(trial.setting))
        wait_until("6 tasks running", lambda: ((n := records.started()) >= MAX_REPLICAS,
                                               (n, pods.errors[-1:])), timeout_s=120)
        dropped = time.monotonic()
        release(trial.redis_url, trial.record, "short")
        # A worker running a long task may hold one short task it prefetched: it waits.
        wait_until("the short tasks done", lambda: (
            (n := records.finished()) >= 32 - 4, n), timeout_s=120)
        start = time.monotonic()
        time.sleep(HOLD_S)
        end = time.monotonic()
        lowest, at_end = trace.lowest_between(start, end), trace.replicas
        # Workers stopped by a scale-down while the long tasks ran: with none, an
        # interruption has another cause (an expired lease).
        stopped = sum(1 for t in pods.terminated.values() if t >= dropped)
        release(trial.redis_url, trial.record, "long")
        # A long task cut off with no worker left may never run again: a list-length
        # trigger does not see a leased task, so nothing scales up to take it back.
        with contextlib.suppress(AssertionError):
            wait_until("all 36 tasks finished",
                       lambda: ((n := records.finished()) >= 36, n), timeout_s=120)
        # Only now: a long task still running counts as started and not finished.
        return {"interrupted": records.interrupted(),
                "lowest_replicas": lowest, "replicas_after_hold": at_end,
                "workers_stopped": stopped, "unfinished": 36 - records.finished()}


SCENARIOS: dict[str, Callable[[Trial], dict[str, Any]]] = {
    "burst": burst, "steady": steady, "drop": drop}


def summarize(results: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, by_scenario in results.items():
        row: dict[str, Any] = {"settings": SETTINGS[name].describe()}
        bursts = by_scenario.get("burst", [])
        for key in ("from_zero_s", "reaction_s"):
            values = [b[key] for b in bursts if b[key] is not None]
            row[key] = stats.median(values)
            row[f"{key}_max"] = max(values) if values else None
            row[f"{key}_missed"] = sum(1 for b in bursts if b[key] is None)
        if by_scenario.get("steady"):
            row["steady"] = by_scenario["steady"]
        if by_scenario.get("drop"):
            row["drop"] = by_scenario["drop"]
        out[name] = row
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=3, help="burst trials per scaler")
    parser.add_argument("--scalers", default=",".join(SETTINGS),
                        help=f"comma-separated, of {', '.join(SETTINGS)}")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--hpa-sync-period", default="15s",
                        help="kube-controller-manager's HPA sync period (its default: 15s)")
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    args = parser.parse_args()
    names = [n for n in args.scalers.split(",") if n]
    scenarios = [s for s in args.scenarios.split(",") if s]
    unknown = [n for n in names if n not in SETTINGS] + [s for s in scenarios
                                                          if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scaler or scenario: {', '.join(unknown)}")
    # Only the control plane is needed here (not helm or Karpenter).
    if any(not (k8s_bin_dir() / b).exists() for b in (*COMPONENTS, "kubectl")):
        ensure_built()
    if any(SETTINGS[n].kind == "keda" for n in names):
        subprocess.run([str(REPO / "scripts" / "k8s" / "build-keda")], check=True)
    started = time.monotonic()
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    with tempfile.TemporaryDirectory(prefix="corral-keda-") as tmp:
        k8s = Cluster(Path(tmp) / "k8s", k8s_bin_dir())
        k8s.start(up_args=(f"--hpa-sync-period={args.hpa_sync_period}",))
        keda: Keda | None = None
        operator: OperatorProcess | None = None
        try:
            k8s.kubectl("apply", "--server-side", "-f", str(CHART_CRDS))
            k8s.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f",
                        str(CHART_CRDS))
            operator = OperatorProcess(k8s).start()
            if any(SETTINGS[n].kind == "keda" for n in names):
                keda = Keda(k8s, keda_bin_dir(), Path(tmp))
                keda.start()
            api = Api(k8s)
            with EmbeddedRedis() as server:
                for name in names:
                    for scenario in scenarios:
                        runs = args.trials if scenario == "burst" else 1
                        for i in range(runs):
                            trial = Trial(k8s, api, SETTINGS[name], server.url)
                            result = SCENARIOS[scenario](trial)
                            results.setdefault(name, {}).setdefault(scenario, []).append(result)
                            print(f"{name} {scenario} {i + 1}: {result}", flush=True)
                            if args.json:  # as it goes: a run cut short keeps its figures
                                write_figures(args, results, started)
        finally:
            if keda is not None:
                keda.stop()
            if operator is not None:
                operator.stop()
            k8s.stop()
    print(json.dumps(write_figures(args, results, started)["scalers"], indent=1))
    return 0


def write_figures(args: argparse.Namespace, results: dict[str, dict[str, list[dict[str, Any]]]],
                  started: float) -> dict[str, Any]:
    figures = {"scalers": summarize(results), "raw": results,
               "hpa_sync_period": args.hpa_sync_period, "keda_version": keda_version(),
               "total_s": round(time.monotonic() - started),
               "measured": time.strftime("%Y-%m-%d", time.gmtime())}
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return figures


def keda_version() -> str:
    return keda_bin_dir().parent.name


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
