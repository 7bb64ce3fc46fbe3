"""SAQ's benchmark jobs, worker settings and producer. Worker:
``saq bench.tasks_saq.settings``."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from typing import Any

import uvloop
from saq import Queue

from bench import record

# The worker builds its loop with asyncio.new_event_loop(): uvloop's documented policy
# hook makes that a uvloop loop, as Corral's is.
asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())

queue = Queue.from_url(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))


async def noop(ctx: dict[str, Any], *, t: float) -> None:
    record.write(t, time.monotonic())


async def io(ctx: dict[str, Any], *, t: float) -> None:
    started = time.monotonic()
    await asyncio.sleep(0.01)
    record.write(t, started)


settings = {
    "queue": queue,
    "functions": [noop, io],
    "concurrency": 100,  # default 10; the same concurrency as every other system here
}


class Producer:
    is_async = True
    bulk_api: str | None = None  # Queue.map enqueues many but also waits for their results

    def __init__(self, url: str) -> None:
        self.queue = Queue.from_url(url)

    async def start(self) -> None:
        await self.queue.connect()

    async def send(self, kind: str, t: float) -> None:
        await self.queue.enqueue(kind, t=t)

    async def send_many(self, kind: str, ts: Sequence[float]) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        await self.queue.disconnect()
