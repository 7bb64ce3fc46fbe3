"""The worker's pub/sub subscription: wake-ups for the fetchers, cancel requests for
running and buffered tasks. It resubscribes after any Redis failure."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping

from redis.asyncio import Redis
from redis.exceptions import RedisError

from corral.channels import Channels
from corral_worker.resilience import RedisHealth


async def listen(
    redis: Redis,
    wake: Mapping[str, asyncio.Event],
    cancel: Mapping[str, Callable[[str], None]],
    health: RedisHealth,
) -> None:
    """Set ``wake[channel]`` on each message there; call ``cancel[channel](task_id)``."""
    while True:
        pubsub = Channels(redis)  # shard channels on a Redis 7+ Cluster
        try:
            await pubsub.subscribe(*wake, *cancel)
            for event in wake.values():
                event.set()  # anything published while unsubscribed is looked for now
            while True:
                channel, data = await pubsub.get()
                if channel in wake:
                    wake[channel].set()
                else:
                    cancel[channel](data.decode())
        except (RedisError, OSError) as exc:
            await asyncio.sleep(health.failed(exc, "subscribe"))
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
