"""arq's benchmark jobs, worker settings and producer. Worker:
``arq bench.tasks_arq.WorkerSettings``."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from typing import Any

import uvloop
from arq import create_pool
from arq.connections import ArqRedis, RedisSettings

from bench import record

# The worker builds its loop with asyncio.get_event_loop(): uvloop's documented policy
# hook makes that a uvloop loop, as Corral's is.
asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def noop(ctx: dict[str, Any], t: float) -> None:
    record.write(t, time.monotonic())


async def io(ctx: dict[str, Any], t: float) -> None:
    started = time.monotonic()
    await asyncio.sleep(0.01)
    record.write(t, started)


class WorkerSettings:
    functions = [noop, io]
    redis_settings = RedisSettings.from_dsn(
        os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    max_jobs = 100  # default 10; the same concurrency as every other system here


class Producer:
    is_async = True
    bulk_api: str | None = None

    def __init__(self, url: str) -> None:
        self.settings = RedisSettings.from_dsn(url)
        self.pool: ArqRedis | None = None

    async def start(self) -> None:
        self.pool = await create_pool(self.settings)

    async def send(self, kind: str, t: float) -> None:
        assert self.pool is not None
        await self.pool.enqueue_job(kind, t)

    async def send_many(self, kind: str, ts: Sequence[float]) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.aclose()
