"""The operator's wake-up subscription (``corral_operator.redis_io.Server.watch``) on
a plain Redis and on a Redis Cluster, where producers SPUBLISH a wake-up to the
queue's own shard and only a shard subscription hears it."""

from __future__ import annotations

import asyncio
import time

from corral.client import Client, Enqueue
from corral_operator.redis_io import RedisSettings, Servers
from tests.integration.test_redis_deployments import redis_cluster

__all__ = ["redis_cluster"]  # the fixture, used here by name


async def _until(check: object, what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def _woken_by_first_task(url: str, queues: list[str]) -> None:
    servers = Servers(RedisSettings(resubscribe_s=0.2))
    server = servers.acquire(url)
    woken: list[str] = []
    try:
        server.watch(queues[:1], woken.append)
        await _until(lambda: server.subscribed and woken, "the first subscription")
        server.watch(queues[1:], woken.append)  # added while subscribed
        await _until(lambda: set(woken) == set(queues), "the catch-up of the added ones")
        woken.clear()
        async with Client.from_url(url) as client:
            for queue in queues:
                await client.enqueue_many([Enqueue("noop", queue=queue)])
            await _until(lambda: set(woken) == set(queues), "a wake-up for each queue")
    finally:
        await servers.close()


async def test_wake_ups_reach_the_watchers_on_a_plain_redis(redis_url: str) -> None:
    await _woken_by_first_task(redis_url, ["wake-a", "wake-b", "wake-c"])


async def test_wake_ups_reach_the_watchers_on_a_cluster(redis_cluster: str) -> None:
    # Queue names whose hash tags fall on different shards.
    await _woken_by_first_task(redis_cluster, ["wake-a", "wake-b", "wake-c", "wake-d"])
