"""Task code that misbehaves: raises CancelledError itself, swallows cancellation,
blocks its thread past its timeout (imported by worker subprocesses too)."""

from __future__ import annotations

import asyncio
import os

import redis

from corral import App

app = App(result_ttl_s=600)


def _redis() -> redis.Redis:
    return redis.Redis.from_url(os.environ["CORRAL_TEST_REDIS_URL"])


@app.task(name="raises_cancelled", timeout=5.0, retries=1, retry_backoff=0.05)
async def raises_cancelled() -> None:
    """What code that awaits a future someone else cancelled does."""
    raise asyncio.CancelledError()


@app.task(name="swallows_timeout", timeout=0.3, retries=0)
async def swallows_timeout() -> str:
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        return "swallowed"
    return "slept"


@app.task(name="swallows_forever", timeout=None)
async def swallows_forever() -> None:
    """Catches every cancellation and goes on."""
    _redis().rpush("test:started", "swallows_forever")
    while True:
        try:  # noqa: SIM105 - spelled out: swallowing the cancellation is the point
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            pass


@app.task(name="sleep", timeout=None)
async def sleep(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


@app.task(name="record")
async def record(tag: str) -> str:
    _redis().rpush("test:order", tag)
    return tag


@app.task(name="blocks_thread", timeout=0.3, retries=0, dead_letter=False)
def blocks_thread() -> str:
    """A plain function that outlives its timeout: it holds its thread until released."""
    _redis().blpop(["test:release"], timeout=60)
    return "released"


@app.task(name="quick_sync", timeout=0.3)
def quick_sync() -> str:
    return "quick"
