"""Tasks used by the worker tests (imported by worker subprocesses too)."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import redis

from corral import App

app = App(result_ttl_s=600)

_sync_redis: redis.Redis | None = None


def _redis() -> redis.Redis:
    # Tasks record what they did in Redis, so tests see it across processes.
    global _sync_redis
    if _sync_redis is None:
        _sync_redis = redis.Redis.from_url(os.environ["CORRAL_TEST_REDIS_URL"])
    return _sync_redis


@app.task(name="noop")
async def noop(n: int = 0) -> int:
    return n


@app.task(name="echo")
async def echo(*args: Any, **kwargs: Any) -> dict[str, Any]:
    return {"args": list(args), "kwargs": kwargs}


@app.task(name="record")
async def record(tag: str, sleep_s: float = 0.0) -> str:
    """Appends ``tag`` to the list ``test:order`` when it starts."""
    _redis().rpush("test:order", tag)
    if sleep_s:
        await asyncio.sleep(sleep_s)
    return tag


@app.task(name="count_run")
async def count_run(task_key: str, sleep_s: float = 0.0) -> str:
    """Counts executions per key in the hash ``test:runs`` (for at-least-once checks)."""
    _redis().hincrby("test:runs", task_key, 1)
    if sleep_s:
        await asyncio.sleep(sleep_s)
    _redis().hincrby("test:completed", task_key, 1)
    return task_key


@app.task(name="sleep", timeout=None)
async def sleep(seconds: float, tag: str = "") -> float:
    """With a ``tag``: appends it to ``test:started`` as it starts, and to
    ``test:cleanup`` if it is cancelled."""
    if tag:
        _redis().rpush("test:started", tag)
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        if tag:
            _redis().rpush("test:cleanup", tag)
        raise
    return seconds


@app.task(name="slow_with_timeout", timeout=0.5, retries=1, retry_backoff=0.1)
async def slow_with_timeout(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


@app.task(name="fail", retries=2, retry_backoff=0.05, retry_backoff_max=0.1)
async def fail(message: str) -> None:
    _redis().incr("test:fail_attempts")
    raise ValueError(message)


@app.task(name="fail_no_dlq", retries=0, dead_letter=False)
async def fail_no_dlq() -> None:
    raise RuntimeError("plain failure")


@app.task(name="bad_result")
async def bad_result() -> object:
    return object()


@app.task(name="blocking")
def blocking(seconds: float) -> str:
    time.sleep(seconds)
    return f"slept {seconds}"


@app.task(name="tracked", timeout=None)
async def tracked(record: str, task_key: str, sleep_s: float = 0.0) -> str:
    """Keeps its own records: every start (HINCRBY ``{record}:starts``, and the start
    time in ms on the list ``{record}:start_ms``) and every finish (``{record}:finishes``).
    A task that started more often than it finished was interrupted."""
    r = _redis()
    r.hincrby(f"{record}:starts", task_key, 1)
    r.rpush(f"{record}:start_ms", int(time.time() * 1000))
    if sleep_s:
        await asyncio.sleep(sleep_s)
    r.hincrby(f"{record}:finishes", task_key, 1)
    return task_key


@app.task(name="gated", timeout=None)
async def gated(record: str, task_key: str, gate: str, max_s: float = 300.0) -> str:
    """Like ``tracked``, but runs until the key ``gate`` exists (at most ``max_s``), so
    a test decides when its long tasks end."""
    r = _redis()
    r.hincrby(f"{record}:starts", task_key, 1)
    r.rpush(f"{record}:start_ms", int(time.time() * 1000))
    for _ in range(int(max_s / 0.2)):  # another process opens the gate: poll it
        if r.exists(gate):
            break
        await asyncio.sleep(0.2)
    r.hincrby(f"{record}:finishes", task_key, 1)
    return task_key


@app.task(name="flaky", retries=3, retry_backoff=0.05, retry_backoff_max=0.1)
async def flaky(failures: int) -> str:
    """Raises ValueError on its first ``failures`` attempts, then succeeds."""
    from corral import current_task

    attempt = current_task().attempt
    if attempt <= failures:
        raise ValueError(f"attempt {attempt} of {failures} planned failures")
    return f"succeeded on attempt {attempt}"


@app.task(name="hog", timeout=None)
async def hog(seconds: float, block_s: float = 0.4) -> None:
    """Blocks the worker's event loop for ``block_s`` at a time (CPU-bound code that never
    awaits would), yielding briefly in between, for ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(block_s)  # noqa: ASYNC251 - blocking the loop is the point
        await asyncio.sleep(0.01)
