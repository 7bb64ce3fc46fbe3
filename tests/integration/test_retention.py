"""What Redis keeps of a task in each state, and for how long (docs/reliability.md)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import redis.asyncio

from corral import Client, TaskFailed
from corral.keys import DEFAULT_PREFIX, queue_keys
from tests.apps.retention import app
from tests.support.inproc import running_worker

KEYS = queue_keys("default", DEFAULT_PREFIX)


async def _until(predicate: Callable[[], Awaitable[bool]], timeout_s: float = 20.0) -> None:
    async with asyncio.timeout(timeout_s):
        while True:
            if await predicate():
                return
            await asyncio.sleep(0.05)


async def _state(conn: redis.asyncio.Redis, task_id: str) -> bytes | None:
    value: bytes | None = await conn.hget(KEYS.task(task_id), "state")
    return value


async def test_queued_records_never_expire_and_finished_ones_drop_the_payload(
    redis_url: str, redis_conn: redis.asyncio.Redis
) -> None:
    async with Client.from_url(redis_url, app=app) as client:
        handle = await client.enqueue("kept")
        assert await redis_conn.pttl(KEYS.task(handle.id)) == -1
        async with running_worker(redis_url, app=app):
            assert await handle.result(timeout=20) == "result"
        record = await redis_conn.hgetall(KEYS.task(handle.id))
        assert b"payload" not in record and record[b"state"] == b"succeeded"
        assert 0 < await redis_conn.pttl(KEYS.task(handle.id)) <= 30_000


async def test_result_ttl_zero_keeps_nothing(
    redis_url: str, redis_conn: redis.asyncio.Redis
) -> None:
    async with Client.from_url(redis_url, app=app) as client:
        ok = await client.enqueue("keep_nothing")
        failed = await client.enqueue("fail_keep_nothing")
        kept = await client.enqueue("kept")  # finishes after the other two
        async with running_worker(redis_url, app=app, concurrency=1):
            await kept.result(timeout=20)
        assert await redis_conn.exists(KEYS.task(ok.id), KEYS.task(failed.id)) == 0
        assert await ok.status() == "unknown"


async def test_dead_letters_expire_and_the_queue_is_bounded(
    redis_url: str, redis_conn: redis.asyncio.Redis
) -> None:
    async with Client.from_url(redis_url, app=app) as client:
        short = await client.enqueue("boom_short")
        handles = [await client.enqueue("boom") for _ in range(7)]
        async with running_worker(redis_url, app=app, concurrency=1, batch_size=1):
            for handle in [short, *handles]:
                with contextlib.suppress(TaskFailed, KeyError):
                    await handle.result(timeout=20)
        # max_dead=5: the entries closest to expiry (the short one first) made room.
        dead = [i.decode() for i in await redis_conn.zrange(KEYS.dead, 0, -1)]
        assert len(dead) == 5 and short.id not in dead
        assert await redis_conn.exists(KEYS.task(short.id)) == 0
        kept = KEYS.task(dead[0])
        assert await redis_conn.hget(kept, "payload") is not None  # requeue needs it
        assert 100_000 < await redis_conn.pttl(kept) <= 120_000
        scores = [score for _, score in await redis_conn.zrange(KEYS.dead, 0, -1,
                                                                 withscores=True)]
        assert scores == sorted(scores)


async def test_expired_dead_letters_leave_the_dead_letter_queue(
    redis_url: str, redis_conn: redis.asyncio.Redis
) -> None:
    async with Client.from_url(redis_url, app=app) as client:
        short = await client.enqueue("boom_short")
        async with running_worker(redis_url, app=app, lease_s=3.0):
            await _until(lambda: _is_dead(redis_conn, short.id))
            # dead_ttl=5 s: the record expires, and a heartbeat drops its entry.
            await _until(lambda: _dead_empty(redis_conn), timeout_s=30)
        assert await redis_conn.exists(KEYS.task(short.id)) == 0


async def _is_dead(conn: redis.asyncio.Redis, task_id: str) -> bool:
    return await _state(conn, task_id) == b"dead"


async def _dead_empty(conn: redis.asyncio.Redis) -> bool:
    return await conn.zcard(KEYS.dead) == 0
