"""The command counter the idle-worker test relies on: it counts what client
connections send, by connection, and never what Lua scripts run."""

from __future__ import annotations

import redis.asyncio

from tests.support.monitor import counting_commands

# 100 INCRs inside one script call.
SCRIPT = "for i = 1, 100 do redis.call('INCR', KEYS[1]) end return 1"


async def test_counts_client_commands_whatever_their_name(
        redis_url: str, redis_conn: redis.asyncio.Redis) -> None:
    other = redis.asyncio.Redis.from_url(redis_url)
    try:
        for conn in (other, redis_conn):
            await conn.ping()  # connected before counting starts
        async with counting_commands(redis_url) as counts:
            for _ in range(20):
                await other.zcard("{q}:ready")  # a command Corral's scripts run as well
            await redis_conn.llen("{q}:list")
            await redis_conn.eval(SCRIPT, 1, "{q}:counter")
    finally:
        await other.aclose()
    assert counts == {"zcard": 20, "llen": 1, "eval": 1}
    assert await redis_conn.get("{q}:counter") == b"100"
