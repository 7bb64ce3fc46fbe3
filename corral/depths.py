"""Queue depths: how much work waits and how much runs. The operator scales on
``read_queue_depths``; ``corral inspect`` and the worker's backlog gauge use it too."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from corral.keys import DEFAULT_PREFIX, queue_keys
from corral.scripts import ScriptCall, Scripts, call_many


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    worker_id: str
    in_flight: int
    running: int
    concurrency: int
    queues: tuple[str, ...]
    started_ms: int
    heartbeat_ms: int
    # The worst event loop lag the worker saw between two heartbeats: a loop blocked by
    # a task that does not await (CPU work, a blocking call) delays every other task.
    loop_lag_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class QueueDepth:
    """One queue at one moment. ``backlog`` counts tasks that could start now
    (ready, and scheduled ones that are due); ``in_flight`` counts leased ones
    (claimed by a worker: running or prefetched)."""

    queue: str
    ready_by_priority: tuple[int, ...]
    scheduled: int
    scheduled_due: int
    in_flight: int
    dead: int
    workers: tuple[WorkerInfo, ...] = field(default=())
    # Ids cancelled while queued are left in their ready list until a claim drops them.
    cancelled_in_ready: int = 0
    # Held back by a rate or concurrency limit (deferred, or waiting for a slot): not in
    # the backlog, since more workers would not run them sooner.
    limited: int = 0

    @property
    def ready(self) -> int:
        return max(0, sum(self.ready_by_priority) - self.cancelled_in_ready)

    @property
    def backlog(self) -> int:
        return self.ready + self.scheduled_due

    def to_json(self) -> dict[str, Any]:
        """The shape ``corral inspect --json`` prints and the dashboard's API serves."""
        return {
            "ready_by_priority": {str(p): n for p, n in enumerate(self.ready_by_priority)},
            "ready": self.ready,
            "scheduled": self.scheduled,
            "scheduled_due": self.scheduled_due,
            "backlog": self.backlog,
            "in_flight": self.in_flight,
            "dead": self.dead,
            "limited": self.limited,
            "workers": [
                {"id": w.worker_id, "in_flight": w.in_flight, "running": w.running,
                 "concurrency": w.concurrency, "queues": list(w.queues),
                 "loop_lag_ms": w.loop_lag_ms, "heartbeat_ms": w.heartbeat_ms}
                for w in self.workers
            ],
        }


async def read_queue_depths(
    redis: Redis, queues: Sequence[str], scripts: Scripts | None = None, *,
    prefix: str = DEFAULT_PREFIX,
) -> dict[str, QueueDepth]:
    """Depths of ``queues`` (under key ``prefix``) read in one pipelined round trip,
    each queue atomically. Raises redis-py's ConnectionError (or TimeoutError) when
    Redis cannot be reached."""
    scripts = scripts or Scripts.register(redis)
    calls: list[ScriptCall] = []
    for queue in queues:
        keys = queue_keys(queue, prefix)
        calls.append((scripts.depths, keys, (), ()))
    replies = await call_many(redis, calls)
    return {queue: _depth(queue, reply) for queue, reply in zip(queues, replies, strict=True)}


def _depth(queue: str, reply: list[Any]) -> QueueDepth:
    ready, scheduled, scheduled_due, leased, dead, workers, cancelled, limited = reply
    return QueueDepth(
        queue=queue,
        ready_by_priority=tuple(int(n) for n in ready),
        scheduled=int(scheduled),
        scheduled_due=int(scheduled_due),
        in_flight=int(leased),
        dead=int(dead),
        workers=tuple(
            _worker(workers[i].decode(), workers[i + 1]) for i in range(0, len(workers), 2)
        ),
        cancelled_in_ready=int(cancelled),
        limited=int(limited),
    )


def _worker(worker_id: str, flat: list[bytes]) -> WorkerInfo:
    info = {flat[i].decode(): flat[i + 1].decode() for i in range(0, len(flat), 2)}

    def number(name: str) -> int:
        try:
            return int(info.get(name, "0"))
        except ValueError:
            return 0

    return WorkerInfo(
        worker_id=worker_id,
        in_flight=number("in_flight"),
        running=number("running"),
        concurrency=number("concurrency"),
        queues=tuple(q for q in info.get("queues", "").split(",") if q),
        started_ms=number("started_ms"),
        heartbeat_ms=number("heartbeat_ms"),
        loop_lag_ms=_float(info.get("loop_lag_ms", "0")),
    )


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        return 0.0
    return value if math.isfinite(value) and value >= 0 else 0.0
