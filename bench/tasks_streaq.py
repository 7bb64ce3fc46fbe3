"""streaQ's benchmark tasks and producer. Worker: ``streaq run bench.tasks_streaq:worker``."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

import anyio
from streaq import Worker

from bench import record

worker = Worker(
    redis_url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
    concurrency=100,  # default 16; the same concurrency as every other system here
    anyio_kwargs={"use_uvloop": True},  # uvloop, as Corral uses and streaQ's benchmarks do
)


@worker.task
async def noop(t: float) -> None:
    record.write(t, time.monotonic())


@worker.task
async def io(t: float) -> None:
    started = time.monotonic()
    await anyio.sleep(0.01)
    record.write(t, started)


class Producer:
    is_async = True
    bulk_api: str | None = "Worker.enqueue_many"

    def __init__(self, url: str) -> None:
        self.tasks = {"noop": noop, "io": io}

    async def start(self) -> None:
        await worker.__aenter__()

    async def send(self, kind: str, t: float) -> None:
        await self.tasks[kind].enqueue(t)

    async def send_many(self, kind: str, ts: Sequence[float]) -> None:
        task = self.tasks[kind]
        await worker.enqueue_many([task.enqueue(t) for t in ts])

    async def close(self) -> None:
        await worker.__aexit__(None, None, None)
