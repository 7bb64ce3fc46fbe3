"""Counting the commands that clients send, as Redis sees them. MONITOR marks
commands that scripts call with a ``lua`` client, so those are left out; the
INFO counters would count them."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter

import redis.asyncio
import redis.exceptions


async def count_client_commands(url: str, duration_s: float) -> Counter[str]:
    conn = redis.asyncio.Redis.from_url(url)
    counts: Counter[str] = Counter()
    try:
        async with conn.monitor() as monitor:
            # The deadline may land inside redis-py's read, which reports it as its own
            # TimeoutError.
            with contextlib.suppress(TimeoutError, redis.exceptions.TimeoutError):
                async with asyncio.timeout(duration_s):
                    async for command in monitor.listen():
                        if command.get("client_type") == "lua":
                            continue
                        counts[str(command["command"]).split(" ", 1)[0].upper()] += 1
    finally:
        await conn.aclose()
    return counts
