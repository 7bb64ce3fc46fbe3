"""The worker's pub/sub subscription: wake-ups for the fetchers, cancel requests for
running and buffered tasks. It resubscribes after any Redis failure."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping

from redis.asyncio import Redis
from redis.exceptions import RedisError

from corral_worker.resilience import RedisHealth


async def listen(
    redis: Redis,
    wake: Mapping[str, asyncio.Event],
    cancel: Mapping[str, Callable[[str], None]],
    health: RedisHealth,
) -> None:
    """Set ``wake[channel]`` on each message there; call ``cancel[channel](task_id)``."""
    while True:
        pubsub = redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(*wake, *cancel)
            for event in wake.values():
                event.set()  # anything published while unsubscribed is looked for now
            while True:
                message = await pubsub.get_message(timeout=None)
                if message is None:
                    continue
                channel = message["channel"].decode()
                if channel in wake:
                    wake[channel].set()
                else:
                    cancel[channel](message["data"].decode())
        except (RedisError, OSError) as exc:
            await asyncio.sleep(health.failed(exc, "subscribe"))
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
