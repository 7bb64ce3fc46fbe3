"""Tasks for the chaos runs (imported by the worker subprocesses).

Each task records its own executions in Redis, so the run can count lost and
duplicated work across processes that are killed at random. The records are
written with retries, so a Redis restart delays a task instead of failing it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import redis.asyncio
from redis.exceptions import RedisError

from corral import App

app = App(result_ttl_s=3_600)

# Every execution pushes "<task key> <pid> <execution id>" when it starts; the id makes a
# push that a lost reply caused to be sent twice count once.
STARTS_KEY = "chaos:starts"
DONE_KEY = "chaos:done"  # hash: task key -> 1 once an execution reached the end

_conn: redis.asyncio.Redis | None = None


def _redis() -> redis.asyncio.Redis:
    global _conn
    if _conn is None:
        _conn = redis.asyncio.Redis.from_url(os.environ["CORRAL_TEST_REDIS_URL"])
    return _conn


async def _retry(command: Callable[[redis.asyncio.Redis], Awaitable[object]]) -> None:
    while True:
        try:
            await command(_redis())
            return
        except (RedisError, OSError):
            await asyncio.sleep(0.1)


@app.task(name="chaos_run", timeout=60.0)
async def chaos_run(task_key: str, sleep_s: float = 0.0) -> str:
    started = f"{task_key} {os.getpid()} {uuid.uuid4().hex}"
    await _retry(lambda r: r.rpush(STARTS_KEY, started))
    if sleep_s:
        await asyncio.sleep(sleep_s)
    await _retry(lambda r: r.hset(DONE_KEY, task_key, 1))
    return task_key


def _mark(marker_dir: str, name: str) -> None:
    # Markers are files, not Redis writes, so they are kept while Redis is unreachable.
    path = Path(marker_dir) / name
    path.write_text(f"{time.time():.6f} {os.getpid()}\n")


@app.task(name="hold", timeout=None)
async def hold(task_key: str, seconds: float, marker_dir: str) -> str:
    """Runs for ``seconds``; writes the files ``<key>.<run>.start``, then ``.cancelled``
    or ``.end``, each holding the time and the process id."""
    run = time.time_ns()
    _mark(marker_dir, f"{task_key}.{run}.start")
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        _mark(marker_dir, f"{task_key}.{run}.cancelled")
        raise
    _mark(marker_dir, f"{task_key}.{run}.end")
    with contextlib.suppress(RedisError, OSError):
        await _redis().hset(DONE_KEY, task_key, 1)
    return task_key
