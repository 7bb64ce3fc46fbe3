"""Tasks with rate and concurrency limits (imported by worker subprocesses too). Each
records when it started and ended in Redis, so tests see it across processes."""

from __future__ import annotations

import asyncio
import os
import time

import redis

from corral import App, current_task

app = App(result_ttl_s=600)

_sync_redis: redis.Redis | None = None


def _redis() -> redis.Redis:
    global _sync_redis
    if _sync_redis is None:
        _sync_redis = redis.Redis.from_url(os.environ["CORRAL_TEST_REDIS_URL"])
    return _sync_redis


async def _record(tag: str, sleep_s: float) -> str:
    """Pushes ``start <id> <tag> <t>`` and ``end ...`` to the list ``test:events``."""
    task_id = current_task().id
    _redis().rpush("test:events", f"start {task_id} {tag} {time.time()}")
    await asyncio.sleep(sleep_s)
    _redis().rpush("test:events", f"end {task_id} {tag} {time.time()}")
    return tag


@app.task(name="two_at_a_time", concurrency_limit=2, retries=5)
async def two_at_a_time(tag: str, sleep_s: float = 0.2) -> str:
    return await _record(tag, sleep_s)


@app.task(name="fifty_per_second", rate_limit="50/s")
async def fifty_per_second(tag: str) -> str:
    return await _record(tag, 0.0)


@app.task(name="one_per_tenant", concurrency_limit=1,
          limit_key=lambda tenant, *_, **__: tenant)
async def one_per_tenant(tenant: str, tag: str, sleep_s: float = 0.3) -> str:
    return await _record(f"{tenant}:{tag}", sleep_s)


@app.task(name="five_per_second_per_tenant", rate_limit="5/s",
          limit_key=lambda tenant, *_, **__: tenant)
async def five_per_second_per_tenant(tenant: str, tag: str) -> str:
    return await _record(f"{tenant}:{tag}", 0.0)


@app.task(name="unlimited")
async def unlimited(tag: str) -> str:
    return await _record(tag, 0.0)
