"""Throughput from sampled counts.

Redis keeps no counter of finished tasks, but every task that reaches a final state is
announced on its queue's ``done`` channel (the same one result waiters listen on). The
dashboard counts those ids per queue, and every ``sample_s`` seconds turns the counts
into a rate and the current backlog into a point of the sparkline. ``History`` is the
pure part; ``Sampler`` does the I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from corral.depths import QueueDepth
from corral.keys import DEFAULT_PREFIX, queue_keys, queue_of_channel

log = logging.getLogger("corral.dashboard")
SAMPLES = 60


@dataclass(frozen=True, slots=True)
class Sample:
    at_s: float
    finished: int
    finished_per_s: float
    backlog: int


class History:
    """The last ``SAMPLES`` samples of each queue."""

    def __init__(self, samples: int = SAMPLES) -> None:
        self._samples = samples
        self._series: dict[str, deque[Sample]] = {}
        self._finished: dict[str, int] = {}
        self._last_at_s: float | None = None

    def count_finished(self, queue: str, n: int) -> None:
        self._finished[queue] = self._finished.get(queue, 0) + n

    def sample(self, at_s: float, depths: dict[str, QueueDepth]) -> None:
        elapsed_s = at_s - self._last_at_s if self._last_at_s is not None else 0.0
        self._last_at_s = at_s
        for queue, depth in depths.items():
            finished = self._finished.pop(queue, 0)
            rate = finished / elapsed_s if elapsed_s > 0 else 0.0
            series = self._series.setdefault(queue, deque(maxlen=self._samples))
            series.append(Sample(at_s, finished, rate, depth.backlog))
        self._finished.clear()

    def series(self, queue: str) -> list[Sample]:
        return list(self._series.get(queue, ()))


Reader = Callable[[], Coroutine[Any, Any, dict[str, QueueDepth]]]


class Sampler:
    """Listens on the ``done`` channels of the queues ``read`` returns and samples them."""

    def __init__(self, redis: Redis, read: Reader, sample_s: float,
                 prefix: str = DEFAULT_PREFIX) -> None:
        self.history = History()
        self._redis = redis
        self._prefix = prefix
        self._read = read
        self._sample_s = sample_s
        self._pubsub: PubSub | None = None
        self._channels: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._sample_loop(), name="dashboard:sample"),
                       asyncio.create_task(self._listen_loop(), name="dashboard:listen")]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._pubsub is not None:
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _sample_loop(self) -> None:
        while True:
            try:
                depths = await self._read()
                await self._subscribe(depths)
                self.history.sample(time.time(), depths)
            except (RedisError, OSError) as exc:
                log.warning("dashboard: sampling failed: %s", exc)
            await asyncio.sleep(self._sample_s)

    async def _subscribe(self, depths: dict[str, QueueDepth]) -> None:
        new = [queue_keys(q, self._prefix).done_channel for q in depths]
        new = [c for c in new if c not in self._channels]
        if not new:
            return
        if self._pubsub is None:
            self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        await self._pubsub.subscribe(*new)
        self._channels.update(new)

    async def _listen_loop(self) -> None:
        while True:
            if self._pubsub is None or not self._channels:
                await asyncio.sleep(0.2)
                continue
            try:
                message = await self._pubsub.get_message(timeout=1.0)
            except (RedisError, OSError) as exc:
                log.warning("dashboard: done channel: %s", exc)
                await asyncio.sleep(1.0)
                continue
            if message is None or message.get("type") != "message":
                continue
            queue = queue_of_channel(message["channel"].decode())
            self.history.count_finished(queue, len(message["data"].split()))
