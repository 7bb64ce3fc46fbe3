"""taskiq's benchmark tasks and producer (taskiq-redis RedisStreamBroker, which
acknowledges). Worker: ``taskiq worker bench.tasks_taskiq:broker``."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence

from taskiq_redis import RedisStreamBroker

from bench import record

broker = RedisStreamBroker(url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))


@broker.task(task_name="noop")
async def noop(t: float) -> None:
    record.write(t, time.monotonic())


@broker.task(task_name="io")
async def io(t: float) -> None:
    started = time.monotonic()
    await asyncio.sleep(0.01)
    record.write(t, started)


class Producer:
    is_async = True
    bulk_api: str | None = None

    def __init__(self, url: str) -> None:
        self.tasks = {"noop": noop, "io": io}

    async def start(self) -> None:
        await broker.startup()

    async def send(self, kind: str, t: float) -> None:
        await self.tasks[kind].kiq(t)

    async def send_many(self, kind: str, ts: Sequence[float]) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        await broker.shutdown()
