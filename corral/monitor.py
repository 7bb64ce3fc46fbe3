"""What ``corral top`` shows, gathered apart from any terminal UI.

Each refresh reads every queue's depths and worker registry entries in one pipelined
round trip (the depths script), plus the ids announced on each queue's ``done`` channel
since the last refresh. Rates and wait percentiles come from those over a sliding
window:

* finished/s: ids that reached a final state (succeeded, failed, cancelled, dead);
* started/s: claims, i.e. finished plus the change in flight (a retried attempt, which
  ends nothing, is not counted);
* wait p50/p99: ready -> started of finished tasks, from their records (a bounded sample
  per refresh).
"""

from __future__ import annotations

import math
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from corral.admin import known_queues
from corral.depths import QueueDepth, WorkerInfo, read_queue_depths
from corral.keys import DEFAULT_PREFIX, queue_keys, queue_of_channel

WINDOW_S = 60.0
# Records read per queue per refresh for wait times, and done messages read per refresh:
# a busy queue costs top a bounded amount of work.
WAIT_SAMPLE = 200
MAX_MESSAGES = 10_000
REDISCOVER_S = 30.0


@dataclass(frozen=True, slots=True)
class QueueRow:
    queue: str
    ready_by_priority: tuple[int, ...]
    backlog: int
    scheduled: int
    in_flight: int
    dead: int
    started_per_s: float | None
    finished_per_s: float | None
    wait_p50_s: float | None
    wait_p99_s: float | None


@dataclass(frozen=True, slots=True)
class WorkerRow:
    worker_id: str
    queues: tuple[str, ...]
    in_flight: int
    running: int
    concurrency: int
    heartbeat_age_s: float | None
    uptime_s: float | None
    loop_lag_ms: float = 0.0  # the worst of its entries (one per queue it serves)


@dataclass(frozen=True, slots=True)
class View:
    queues: list[QueueRow]
    workers: list[WorkerRow]


@dataclass(slots=True)
class QueueHistory:
    """One queue's recent samples; times are ``time.monotonic()`` seconds."""

    in_flight: deque[tuple[float, int]] = field(default_factory=deque)
    finished: deque[tuple[float, int]] = field(default_factory=deque)
    waits: deque[tuple[float, float]] = field(default_factory=deque)

    def add(self, now_s: float, in_flight: int, finished: int, waits_s: Iterable[float]) -> None:
        self.in_flight.append((now_s, in_flight))
        self.finished.append((now_s, finished))
        self.waits.extend((now_s, w) for w in waits_s)
        start_s = now_s - WINDOW_S
        for samples in (self.in_flight, self.finished):
            # Keep the newest sample at or before the window's start: the rates' base.
            while len(samples) > 1 and samples[1][0] <= start_s:
                samples.popleft()
        while self.waits and self.waits[0][0] < start_s:
            self.waits.popleft()

    def rates(self) -> tuple[float | None, float | None]:
        """(started/s, finished/s) over the window, None until there are two samples."""
        if len(self.in_flight) < 2:
            return None, None
        (first_s, first_in_flight), (last_s, last_in_flight) = (
            self.in_flight[0], self.in_flight[-1])
        span_s = last_s - first_s
        if span_s <= 0:
            return None, None
        # The first sample's finishes happened before the window began.
        finished = sum(n for _, n in list(self.finished)[1:])
        started = max(0, finished + last_in_flight - first_in_flight)
        return started / span_s, finished / span_s

    def wait_percentiles(self) -> tuple[float | None, float | None]:
        waits = [w for _, w in self.waits]
        return percentile(waits, 50), percentile(waits, 99)


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def queue_row(depth: QueueDepth, history: QueueHistory) -> QueueRow:
    started, finished = history.rates()
    p50, p99 = history.wait_percentiles()
    return QueueRow(
        queue=depth.queue, ready_by_priority=depth.ready_by_priority, backlog=depth.backlog,
        scheduled=depth.scheduled, in_flight=depth.in_flight, dead=depth.dead,
        started_per_s=started, finished_per_s=finished, wait_p50_s=p50, wait_p99_s=p99,
    )


def worker_rows(depths: Iterable[QueueDepth], now_ms: int) -> list[WorkerRow]:
    """One row per worker id; a worker serving several queues has an entry in each."""
    entries: dict[str, list[WorkerInfo]] = {}
    for depth in depths:
        for info in depth.workers:
            entries.setdefault(info.worker_id, []).append(info)
    return [_worker_row(worker_id, infos, now_ms) for worker_id, infos in entries.items()]


def _worker_row(worker_id: str, infos: list[WorkerInfo], now_ms: int) -> WorkerRow:
    heartbeat_ms = max(i.heartbeat_ms for i in infos)
    started_ms = min((i.started_ms for i in infos if i.started_ms), default=0)
    queues = sorted({q for i in infos for q in i.queues})
    return WorkerRow(
        worker_id=worker_id,
        queues=tuple(queues),
        in_flight=sum(i.in_flight for i in infos),
        running=sum(i.running for i in infos),
        concurrency=max(i.concurrency for i in infos),
        heartbeat_age_s=max(0.0, (now_ms - heartbeat_ms) / 1000) if heartbeat_ms else None,
        uptime_s=max(0.0, (now_ms - started_ms) / 1000) if started_ms else None,
        loop_lag_ms=max(i.loop_lag_ms for i in infos),
    )


# Sort orders, cycled by a key in the UI: (label, key, descending).
QUEUE_SORTS: list[tuple[str, Callable[[QueueRow], Any], bool]] = [
    ("backlog", lambda r: (r.backlog, r.queue), True),
    ("in flight", lambda r: (r.in_flight, r.queue), True),
    ("dead", lambda r: (r.dead, r.queue), True),
    ("finished/s", lambda r: (r.finished_per_s or 0.0, r.queue), True),
    ("wait p99", lambda r: (r.wait_p99_s or 0.0, r.queue), True),
    ("name", lambda r: r.queue, False),
]
WORKER_SORTS: list[tuple[str, Callable[[WorkerRow], Any], bool]] = [
    ("in flight", lambda r: (r.in_flight, r.worker_id), True),
    ("heartbeat age", lambda r: (r.heartbeat_age_s or 0.0, r.worker_id), True),
    ("loop lag", lambda r: (r.loop_lag_ms, r.worker_id), True),
    ("id", lambda r: r.worker_id, False),
]


def arrange(view: View, queue_filter: str, queue_sort: int, worker_sort: int) -> View:
    """The view as shown: queues whose name contains ``queue_filter`` and the workers
    serving one of them, each sorted by the chosen order."""
    text = queue_filter.strip().lower()
    queues = [r for r in view.queues if text in r.queue.lower()]
    names = {r.queue for r in queues}
    workers = [w for w in view.workers if not text or names.intersection(w.queues)]
    _, queue_key, queue_desc = QUEUE_SORTS[queue_sort % len(QUEUE_SORTS)]
    _, worker_key, worker_desc = WORKER_SORTS[worker_sort % len(WORKER_SORTS)]
    return View(sorted(queues, key=queue_key, reverse=queue_desc),
                sorted(workers, key=worker_key, reverse=worker_desc))


class Monitor:
    """Reads what ``corral top`` shows. ``queues=None``: every queue found (by SCAN,
    repeated every REDISCOVER_S)."""

    def __init__(self, redis: Redis, queues: Sequence[str] | None = None,
                 prefix: str = DEFAULT_PREFIX) -> None:
        self._redis = redis
        self._prefix = prefix
        self._fixed = list(queues) if queues else None
        self._queues: list[str] = []
        self._discovered_at = -math.inf
        self._pubsub: PubSub | None = None
        self._subscribed: set[str] = set()
        self._histories: dict[str, QueueHistory] = {}

    async def refresh(self) -> View:
        now_s = time.monotonic()
        await self._discover(now_s)
        await self._subscribe()
        done = await self._drain_done()
        depths = await read_queue_depths(self._redis, self._queues,
                                         prefix=self._prefix) if self._queues else {}
        rows = []
        for queue, depth in depths.items():
            ids = done.get(queue, [])
            waits = await self._waits(queue, ids)
            history = self._histories.setdefault(queue, QueueHistory())
            history.add(now_s, depth.in_flight, len(ids), waits)
            rows.append(queue_row(depth, history))
        return View(rows, worker_rows(depths.values(), int(time.time() * 1000)))

    async def close(self) -> None:
        if self._pubsub is not None:
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]
            self._pubsub = None

    async def _discover(self, now_s: float) -> None:
        if self._fixed is not None:
            self._queues = self._fixed
        elif now_s - self._discovered_at >= REDISCOVER_S:
            self._queues = await known_queues(self._redis, prefix=self._prefix)
            self._discovered_at = now_s

    async def _subscribe(self) -> None:
        channels = [queue_keys(q, self._prefix).done_channel for q in self._queues]
        new = [c for c in channels if c not in self._subscribed]
        if not new:
            return
        if self._pubsub is None:
            self._pubsub = self._redis.pubsub()
        await self._pubsub.subscribe(*new)
        self._subscribed.update(new)

    async def _drain_done(self) -> dict[str, list[str]]:
        """Ids announced since the last refresh, by queue (read without waiting)."""
        done: dict[str, list[str]] = {}
        if self._pubsub is None:
            return done
        for _ in range(MAX_MESSAGES):
            message = await self._pubsub.get_message(timeout=0.0)
            if message is None:
                break
            if message["type"] != "message":
                continue
            queue = queue_of_channel(message["channel"].decode())
            done.setdefault(queue, []).extend(message["data"].decode().split())
        return done

    async def _waits(self, queue: str, ids: list[str]) -> list[float]:
        sample = ids if len(ids) <= WAIT_SAMPLE else random.sample(ids, WAIT_SAMPLE)
        if not sample:
            return []
        keys = queue_keys(queue, self._prefix)
        async with self._redis.pipeline(transaction=False) as pipe:
            for task_id in sample:
                pipe.hmget(keys.task(task_id), ["ready_ms", "started_ms"])
            rows = cast(list[list[bytes | None]], await pipe.execute())
        return [w for w in (_wait_s(ready, started) for ready, started in rows) if w is not None]


def _wait_s(ready_ms: bytes | None, started_ms: bytes | None) -> float | None:
    """Ready -> started; None for a task that never started (cancelled while queued)."""
    try:
        ready, started = int(ready_ms or b""), int(started_ms or b"")
    except ValueError:
        return None
    return max(0.0, (started - ready) / 1000)
