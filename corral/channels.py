"""Listening to queue channels (wake, cancel, done). The scripts publish with PUBLISH,
or with SPUBLISH on a Redis 7+ Cluster so that a wake-up stays in the queue's shard
instead of reaching every node (see prelude.lua); this module subscribes to match."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError

from corral.connection import is_cluster
from corral.keys import queue_of_channel

Message = tuple[str, bytes]  # channel, data


class Channels:
    """Subscriptions to queue channels on one client, read as one stream of messages.
    On a cluster, each queue (one slot, one shard) has its own shard subscription and
    reader; elsewhere one connection carries them all."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._sharded = is_cluster(redis)
        self._plain: PubSub | None = None
        self._shards: dict[str, PubSub] = {}  # queue -> its shard subscription
        self._readers: list[asyncio.Task[None]] = []
        self._inbox: asyncio.Queue[Message | BaseException] = asyncio.Queue()

    async def subscribe(self, *channels: str) -> None:
        if not self._sharded:
            if self._plain is None:
                self._plain = self._redis.pubsub(ignore_subscribe_messages=True)
            await self._plain.subscribe(*channels)
            return
        by_queue: dict[str, list[str]] = {}
        for channel in channels:
            by_queue.setdefault(queue_of_channel(channel), []).append(channel)
        for queue, names in by_queue.items():
            await self._subscribe_shard(queue, names)

    async def unsubscribe(self, *channels: str) -> None:
        if not self._sharded:
            if self._plain is not None:
                await self._plain.unsubscribe(*channels)
            return
        for channel in channels:
            pubsub = self._shards.get(queue_of_channel(channel))
            if pubsub is None:
                continue
            if channel in pubsub.shard_channels:
                await pubsub.sunsubscribe(channel)
            else:
                await pubsub.unsubscribe(channel)

    async def _subscribe_shard(self, queue: str, channels: list[str]) -> None:
        # Shard subscriptions are routed by the slot table, empty until a first command.
        await cast(RedisCluster, self._redis).initialize()
        pubsub = self._shards.get(queue)
        first = pubsub is None
        if pubsub is None:
            pubsub = self._shards[queue] = self._redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.ssubscribe(*channels)
        except ResponseError:
            # A cluster older than Redis 7 has no shard channels; its scripts PUBLISH.
            await pubsub.subscribe(*channels)
        if first:
            self._readers.append(asyncio.create_task(self._read_shard(pubsub),
                                                     name=f"corral:channels:{queue}"))

    async def _read_shard(self, pubsub: Any) -> None:
        try:
            while True:
                if pubsub.shard_channels:
                    message = await pubsub.get_sharded_message(timeout=None)
                else:
                    message = await pubsub.get_message(timeout=None)
                if message is not None and message["type"] in ("message", "smessage"):
                    self._inbox.put_nowait(_message(message))
                elif message is None:
                    await asyncio.sleep(0.01)  # no message: do not spin
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # handed to the reader of get()
            self._inbox.put_nowait(exc)

    async def get(self) -> Message:
        """The next message; raises what the connection raised (RedisError, OSError)."""
        while True:
            message = await self.get_within(None)
            if message is not None:
                return message

    async def get_within(self, timeout_s: float | None) -> Message | None:
        """The next message, or None when none came within ``timeout_s`` (None: wait
        for one, though a plain subscription may still return None now and then)."""
        if not self._sharded:
            assert self._plain is not None, "subscribe first"
            message = await self._plain.get_message(timeout=timeout_s)
            return None if message is None else _message(message)
        try:
            async with asyncio.timeout(timeout_s):
                item = await self._inbox.get()
        except TimeoutError:
            return None
        if isinstance(item, BaseException):
            raise item
        return item

    async def aclose(self) -> None:
        for reader in self._readers:
            reader.cancel()
        for reader in self._readers:
            with contextlib.suppress(BaseException):
                await reader
        self._readers.clear()
        for pubsub in [*self._shards.values(), *([self._plain] if self._plain else [])]:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
        self._shards.clear()
        self._plain = None


def _message(message: dict[str, Any]) -> Message:
    channel = message["channel"]
    return channel.decode() if isinstance(channel, bytes) else str(channel), message["data"]
