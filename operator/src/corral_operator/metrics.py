"""The operator's Prometheus metrics and the HTTP server that exposes them."""

from __future__ import annotations

import contextlib

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from prometheus_client.registry import CollectorRegistry

from corral.errors import ConfigError

_LABELS = ("namespace", "taskqueue")


class OperatorMetrics:
    """One set of series per TaskQueue, labelled by namespace and name."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.desired_replicas = Gauge(
            "corral_operator_desired_replicas", "Replicas the scaling policy asks for",
            _LABELS, registry=r)
        self.current_replicas = Gauge(
            "corral_operator_current_replicas", "Replicas of the worker Deployment",
            _LABELS, registry=r)
        self.ready_replicas = Gauge(
            "corral_operator_ready_replicas", "Ready worker pods", _LABELS, registry=r)
        self.backlog = Gauge(
            "corral_operator_backlog", "Tasks that could start now, over the TaskQueue's queues",
            _LABELS, registry=r)
        self.in_flight = Gauge(
            "corral_operator_in_flight", "Tasks claimed by workers, over the TaskQueue's queues",
            _LABELS, registry=r)
        self.min_replicas = Gauge(
            "corral_operator_min_replicas", "spec.scaling.minReplicas", _LABELS, registry=r)
        self.max_replicas = Gauge(
            "corral_operator_max_replicas", "spec.scaling.maxReplicas", _LABELS, registry=r)
        self.dead_letter = Gauge(
            "corral_operator_dead_letter", "Tasks in the dead-letter queue, per queue",
            (*_LABELS, "queue"), registry=r)
        self.redis_up = Gauge(
            "corral_operator_redis_up", "1 when the last Redis read succeeded", _LABELS,
            registry=r)
        self.scale_decisions = Counter(
            "corral_operator_scale_decisions", "Replica count changes made",
            (*_LABELS, "direction"), registry=r)
        self.reconcile_errors = Counter(
            "corral_operator_reconcile_errors", "Failed steps of a reconcile",
            (*_LABELS, "stage"), registry=r)
        self.poll_duration = Histogram(
            "corral_operator_poll_duration_seconds", "Time of one reconcile pass",
            _LABELS, registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self._labelled = (self.desired_replicas, self.current_replicas, self.ready_replicas,
                          self.min_replicas, self.max_replicas, self.backlog, self.in_flight,
                          self.redis_up, self.poll_duration)
        self._dead_letter_queues: dict[tuple[str, str], set[str]] = {}

    def set_dead_letter(self, namespace: str, taskqueue: str, counts: dict[str, int]) -> None:
        known = self._dead_letter_queues.setdefault((namespace, taskqueue), set())
        for queue in known - counts.keys():  # a queue left the spec
            with contextlib.suppress(KeyError):
                self.dead_letter.remove(namespace, taskqueue, queue)
        for queue, count in counts.items():
            self.dead_letter.labels(namespace, taskqueue, queue).set(count)
        known.clear()
        known.update(counts)

    def forget(self, namespace: str, taskqueue: str) -> None:
        """Drop a deleted TaskQueue's gauges (counters stay, as Prometheus expects)."""
        for metric in self._labelled:
            with contextlib.suppress(KeyError):
                metric.remove(namespace, taskqueue)
        self.set_dead_letter(namespace, taskqueue, {})
        self._dead_letter_queues.pop((namespace, taskqueue), None)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsServer:
    """``/metrics`` on its own port, next to kopf's liveness endpoint."""

    def __init__(self, metrics: OperatorMetrics) -> None:
        self._metrics = metrics
        self._runner: web.AppRunner | None = None

    async def start(self, host: str, port: int) -> int:
        app = web.Application()
        app.router.add_get("/metrics", self._serve)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, host, port, reuse_address=True).start()
        except OSError as exc:
            await self.stop()
            raise ConfigError(f"cannot serve metrics on {host}:{port}: {exc.strerror}") from None
        return int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _serve(self, request: web.Request) -> web.Response:
        return web.Response(body=self._metrics.render(),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})
