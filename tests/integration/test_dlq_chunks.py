"""Dead-letter operations on a huge dead-letter queue work in bounded chunks: no
script call blocks Redis for long (SLOWLOG), and every task is still handled."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio

from bench.cpu import first_in_line
from corral.admin import DLQ_CHUNK, dead_tasks, dlq_change
from corral.embedded import EmbeddedRedis
from corral.keys import DEFAULT_PREFIX, queue_keys

DEAD_COUNT = 100_000
SLOW_US = 10_000  # 10 ms
KEYS = queue_keys("default", DEFAULT_PREFIX)


def corral(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "corral", "--redis-url", url, *args],
                          capture_output=True, text=True, timeout=600)


async def _bury(conn: redis.asyncio.Redis, count: int) -> list[str]:
    """``count`` dead tasks, stored as the finish script stores them."""
    ids = [uuid.uuid4().hex for _ in range(count)]
    now_ms = 1_700_000_000_000
    expires_ms = 4_000_000_000_000
    for start in range(0, count, 5000):
        async with conn.pipeline(transaction=False) as pipe:
            for i, task_id in enumerate(ids[start : start + 5000], start):
                pipe.hset(KEYS.task(task_id), mapping={
                    "name": "noop", "payload": '{"args":[1],"kwargs":{}}', "prio": 0,
                    "state": "dead", "attempts": 1, "dead_ms": now_ms + i,
                    "finished_ms": now_ms + i,
                    "error": '{"type":"ValueError","message":"boom","traceback":""}',
                })
                pipe.zadd(KEYS.dead, {task_id: expires_ms + i})
            await pipe.execute()
    return ids


@pytest.fixture
async def slowlog(redis_conn: redis.asyncio.Redis,
                  redis_server: EmbeddedRedis) -> AsyncIterator[redis.asyncio.Redis]:
    """SLOWLOG on for calls over 10 ms. The machine may be shared: Redis runs first in
    line meanwhile, so that a duration is Redis's own work, not a wait for a CPU."""
    before = (await redis_conn.config_get("slowlog-log-slower-than"))["slowlog-log-slower-than"]
    await redis_conn.config_set("slowlog-log-slower-than", SLOW_US)
    await redis_conn.config_set("slowlog-max-len", 1000)
    # An AOF rewrite forks Redis, and the copy-on-write faults that follow slow every
    # command down for a while: that is not the script's work, so none starts meanwhile.
    rewrite = (await redis_conn.config_get("auto-aof-rewrite-percentage"))[
        "auto-aof-rewrite-percentage"]
    await redis_conn.config_set("auto-aof-rewrite-percentage", 0)
    await _wait_no_rewrite(redis_conn)
    assert redis_server.process is not None
    with first_in_line(redis_server.process.pid):
        yield redis_conn
    await redis_conn.config_set("slowlog-log-slower-than", before)
    await redis_conn.config_set("auto-aof-rewrite-percentage", rewrite)


async def _wait_no_rewrite(conn: redis.asyncio.Redis) -> None:
    for _ in range(1200):
        if not (await conn.info("persistence"))["aof_rewrite_in_progress"]:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("an AOF rewrite still runs after 60 s")


async def _slow_commands(conn: redis.asyncio.Redis) -> list[str]:
    entries = await conn.slowlog_get(1000)
    return [f"{e['duration']} us: {e['command'][:60]!r}" for e in entries]


async def test_requeue_all_and_purge_all_of_100k_stay_under_10ms_per_call(
    redis_url: str, slowlog: redis.asyncio.Redis
) -> None:
    conn = slowlog
    await _bury(conn, DEAD_COUNT)
    await conn.slowlog_reset()
    requeued = corral(redis_url, "dlq", "requeue", "--all")
    assert requeued.returncode == 0, requeued.stderr
    assert requeued.stdout.strip() == f"requeued {DEAD_COUNT} tasks"
    assert await _slow_commands(conn) == []
    assert await conn.llen(KEYS.ready[0]) == DEAD_COUNT
    assert await conn.zcard(KEYS.dead) == 0

    purge_ids = await _bury(conn, DEAD_COUNT)
    await conn.slowlog_reset()
    purged = corral(redis_url, "dlq", "purge", "--all")
    assert purged.returncode == 0, purged.stderr
    assert purged.stdout.strip() == f"purged {DEAD_COUNT} tasks"
    assert await _slow_commands(conn) == []
    assert await conn.zcard(KEYS.dead) == 0
    assert await conn.exists(*(KEYS.task(i) for i in purge_ids[::1000])) == 0


async def test_list_of_100k_reads_in_chunks(redis_url: str,
                                            slowlog: redis.asyncio.Redis) -> None:
    await _bury(slowlog, DEAD_COUNT)
    await slowlog.slowlog_reset()
    listed = await dead_tasks(slowlog, "default", limit=DEAD_COUNT)
    assert len(listed) == DEAD_COUNT
    assert listed[0].error_type == "ValueError" and listed[0].name == "noop"
    assert await _slow_commands(slowlog) == []


async def test_requeue_and_purge_by_id_keep_their_meaning(
    redis_url: str, redis_conn: redis.asyncio.Redis
) -> None:
    ids = await _bury(redis_conn, 3 * DLQ_CHUNK)
    chosen = ids[: DLQ_CHUNK + 50]  # more than one chunk
    assert await dlq_change(redis_conn, "default", "requeue", [*chosen, "no-such-id"]) == len(
        chosen
    )
    assert await redis_conn.llen(KEYS.ready[0]) == len(chosen)
    states = {await redis_conn.hget(KEYS.task(i), "state") for i in chosen}
    assert states == {b"queued"}
    # A requeued record must not keep the dead letter's expiry: a queued task never expires.
    assert await redis_conn.pttl(KEYS.task(chosen[0])) == -1
    # Requeuing again finds them gone from the dead-letter queue: nothing is doubled.
    assert await dlq_change(redis_conn, "default", "requeue", chosen[:10]) == 0
    assert await redis_conn.llen(KEYS.ready[0]) == len(chosen)

    purged = corral(redis_url, "dlq", "purge", ids[-1])
    assert purged.stdout.strip() == "purged 1 task"
    assert await redis_conn.exists(KEYS.task(ids[-1])) == 0
    assert await redis_conn.zcard(KEYS.dead) == 3 * DLQ_CHUNK - len(chosen) - 1
    both = corral(redis_url, "dlq", "purge", ids[0], "--all")
    assert both.returncode == 2 and "not both" in both.stderr


async def test_requeue_all_leaves_records_with_nothing_to_run(
    redis_url: str, redis_conn: redis.asyncio.Redis
) -> None:
    ids = await _bury(redis_conn, 2 * DLQ_CHUNK + 7)
    empty = ids[:DLQ_CHUNK + 3]  # a chunk and more with no payload: they stay dead
    async with redis_conn.pipeline(transaction=False) as pipe:
        for task_id in empty:
            pipe.hdel(KEYS.task(task_id), "payload")
        await pipe.execute()
    assert await dlq_change(redis_conn, "default", "requeue") == len(ids) - len(empty)
    assert set(await redis_conn.zrange(KEYS.dead, 0, -1)) == {i.encode() for i in empty}
