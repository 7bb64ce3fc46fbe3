"""Corral's benchmark tasks and producer. Worker:
``corral worker bench.tasks_corral:app --concurrency 100 --batch-size 100``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import corral
from bench import record

app = corral.App()


@app.task(name="noop")
async def noop(t: float) -> None:
    record.write(t, time.monotonic())


# The same no-op under limits that never hold it back (far above what one worker
# claims), so a benchmark sees what checking them costs per task.
@app.task(name="noop_limited", rate_limit="1000000/s", concurrency_limit=100_000)
async def noop_limited(t: float) -> None:
    record.write(t, time.monotonic())


@app.task(name="io")
async def io(t: float) -> None:
    started = time.monotonic()
    await asyncio.sleep(0.01)
    record.write(t, started)


class Producer:
    is_async = True
    bulk_api: str | None = "Client.enqueue_many"

    def __init__(self, url: str) -> None:
        self.client = corral.Client.from_url(url)

    async def start(self) -> None:
        await self.client.redis.ping()

    async def send(self, kind: str, t: float) -> None:
        await self.client.enqueue(kind, args=[t])

    async def send_many(self, kind: str, ts: Sequence[float]) -> None:
        await self.client.enqueue_many([corral.Enqueue(kind, args=[t]) for t in ts])

    async def close(self) -> None:
        await self.client.close()
