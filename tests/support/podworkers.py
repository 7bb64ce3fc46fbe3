"""Real worker processes standing in for the pods kwok only pretends to run.

:class:`PodWorkers` watches a TaskQueue's pods on a thread and plays the kubelet's
part: a worker (``--worker-id`` = the pod's name) starts when its pod is Running,
and gets SIGTERM as soon as the pod is being deleted or is gone, whoever deleted it
(the ReplicaSet on a scale-down, Karpenter draining a node), so drains are real."""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from collections.abc import Sequence

from tests.support.k8s import Cluster
from tests.support.workers import WorkerProcess


class PodWorkers:
    def __init__(self, k8s: Cluster, namespace: str, taskqueue: str, redis_url: str,
                 worker_args: Sequence[str], interval_s: float = 0.5) -> None:
        self.k8s, self.namespace, self.taskqueue = k8s, namespace, taskqueue
        self.redis_url, self.worker_args = redis_url, list(worker_args)
        self.interval_s = interval_s
        self.workers: dict[str, WorkerProcess] = {}
        self.terminated: dict[str, float] = {}  # pod -> when its worker got SIGTERM
        self.started: dict[str, float] = {}  # pod -> when its worker was started
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="pod-workers", daemon=True)

    def __enter__(self) -> PodWorkers:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)
        for proc in self.workers.values():
            proc.close()

    def _pods(self) -> dict[str, dict[str, object]]:
        proc = self.k8s.kubectl("-n", self.namespace, "get", "pods", "-l",
                                f"corral.dev/taskqueue={self.taskqueue}", "-o", "json",
                                check=False, timeout=20)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr)
        return {p["metadata"]["name"]: p for p in json.loads(proc.stdout)["items"]}

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._sync(self._pods())
            except Exception as exc:  # the API server may be slow; keep watching
                self.errors.append(str(exc))
            self._stop.wait(self.interval_s)

    def _sync(self, pods: dict[str, dict[str, object]]) -> None:
        for name, pod in pods.items():
            meta, status = pod["metadata"], pod.get("status") or {}
            assert isinstance(meta, dict) and isinstance(status, dict)
            if meta.get("deletionTimestamp"):
                self._terminate(name)
            elif status.get("phase") == "Running" and name not in self.workers:
                self.workers[name] = WorkerProcess(self.redis_url, worker_id=name,
                                                   args=self.worker_args)
                self.started[name] = time.monotonic()
        for name in list(self.workers):
            if name not in pods:
                self._terminate(name)

    def _terminate(self, name: str) -> None:
        proc = self.workers.get(name)
        if proc is None or name in self.terminated:
            return
        self.terminated[name] = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            proc.process.send_signal(signal.SIGTERM)

    def running(self) -> list[str]:
        return [n for n, p in list(self.workers.items())
                if n not in self.terminated and p.process.poll() is None]
