"""The worker's Prometheus metrics. Counts are kept in plain dicts on the hot path
(no locks, no label lookups per task) and turned into metric families only when
scraped, by a collector on the worker's own registry."""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

# What became of each attempt: every attempt is counted under exactly one of these.
# Timeouts are counted apart (an attempt that timed out is also retried, failed or dead).
OUTCOMES = ("succeeded", "failed", "retried", "cancelled", "dead", "requeued")
DURATION_BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
WAIT_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 10, 60, 300)


class _Histogram:
    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def buckets(self) -> list[tuple[str, float]]:
        cumulative = 0
        out: list[tuple[str, float]] = []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            cumulative += count
            out.append(("+Inf" if bound == float("inf") else repr(float(bound)), cumulative))
        return out


class WorkerMetrics:
    def __init__(self, queues: Mapping[str, int]) -> None:
        self.tasks_total: dict[tuple[str, str, str], int] = defaultdict(int)
        self.timeouts_total: dict[tuple[str, str], int] = defaultdict(int)
        self.durations: dict[tuple[str, str], _Histogram] = {}
        self.waits = {queue: _Histogram(WAIT_BUCKETS_S) for queue in queues}
        self.backlog: dict[str, int] = dict.fromkeys(queues, 0)
        self.event_loop_lag_s = 0.0
        self.lease_takeovers = 0
        self.redis_errors = 0

    def started(self, queue: str, wait_s: float) -> None:
        self.waits[queue].observe(wait_s if wait_s > 0 else 0.0)

    def finished(self, queue: str, task: str, outcome: str, duration_s: float | None) -> None:
        self.tasks_total[queue, task, outcome] += 1
        if duration_s is not None:
            histogram = self.durations.get((queue, task))
            if histogram is None:
                histogram = self.durations[queue, task] = _Histogram(DURATION_BUCKETS_S)
            histogram.observe(duration_s)


class WorkerCollector(Collector):
    """Reads ``WorkerMetrics`` and the live gauges at scrape time."""

    def __init__(
        self,
        metrics: WorkerMetrics,
        active: Callable[[], Mapping[str, int]],
        prefetched: Callable[[], Mapping[str, int]],
        stuck_threads: Callable[[], int],
    ) -> None:
        self._metrics = metrics
        self._active = active
        self._prefetched = prefetched
        self._stuck_threads = stuck_threads

    def collect(self) -> Iterator[Metric]:
        m = self._metrics
        yield _gauge("corral_active_tasks", "Tasks running now.", self._active())
        yield _gauge("corral_prefetched_tasks", "Tasks claimed, not started.", self._prefetched())
        yield _gauge("corral_queue_backlog", "Tasks ready to start (sampled).", m.backlog)
        tasks = CounterMetricFamily(
            "corral_tasks", "Finished attempts by outcome.", labels=["queue", "task", "outcome"]
        )
        for (queue, task, outcome), count in sorted(m.tasks_total.items()):
            tasks.add_metric([queue, task, outcome], count)
        yield tasks
        timeouts = CounterMetricFamily(
            "corral_task_timeouts", "Attempts stopped at their timeout.", labels=["queue", "task"]
        )
        for (queue, task), count in sorted(m.timeouts_total.items()):
            timeouts.add_metric([queue, task], count)
        yield timeouts
        yield GaugeMetricFamily(
            "corral_stuck_threads",
            "Threads still running a plain-def task past its timeout or cancellation.",
            value=self._stuck_threads(),
        )
        durations = HistogramMetricFamily(
            "corral_task_duration_seconds", "Run time of attempts.", labels=["queue", "task"]
        )
        for (queue, task), histogram in sorted(m.durations.items()):
            durations.add_metric([queue, task], histogram.buckets(), histogram.total)
        yield durations
        waits = HistogramMetricFamily(
            "corral_task_wait_seconds", "Time from ready to started.", labels=["queue"]
        )
        for queue, histogram in m.waits.items():
            waits.add_metric([queue], histogram.buckets(), histogram.total)
        yield waits
        yield GaugeMetricFamily(
            "corral_event_loop_lag_seconds", "Event loop lag.", value=m.event_loop_lag_s
        )
        yield CounterMetricFamily(
            "corral_lease_takeovers",
            "Finished attempts whose lease had passed to another worker.",
            value=m.lease_takeovers,
        )
        yield CounterMetricFamily(
            "corral_redis_errors", "Failed Redis calls.", value=m.redis_errors
        )


def _gauge(name: str, documentation: str, values: Mapping[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=["queue"])
    for queue, value in values.items():
        family.add_metric([queue], value)
    return family
