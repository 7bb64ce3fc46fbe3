"""Every Redis call the operator makes, shared by the TaskQueues that use one Redis
(as Kubernetes calls are behind ``kube``).

- One client per Redis URL, however many TaskQueues use it (:class:`Servers`).
- Depth reads asked for within one short window are sent together, one pipelined
  round trip per server (:meth:`Server.depths`). The TaskQueue loops wake on a
  common grid of their ``pollSeconds``, so N TaskQueues on one Redis cost one
  round trip per tick instead of N.
- One subscription per server to the wake channels of the watched queues. Producers
  publish there when a queue goes from empty to non-empty (an enqueue, a delayed
  enqueue, a retry, requeued tasks), so an idle TaskQueue can scale from zero at
  once instead of at its next poll (:meth:`Server.watch`).
- The periodic tasks registered on the watched queues are ticked on every poll
  (:meth:`Server.tick_schedules`), so a tick is enqueued while no worker runs and the
  TaskQueue then scales from zero to run it. The schedules are kept between polls, so
  a poll with no tick due makes no call; they are read again when a registration
  publishes a change, and every ``schedules_reread_s`` in case that was missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from corral.channels import Channels
from corral.connection import connect, redact
from corral.depths import QueueDepth, read_queue_depths
from corral.errors import CorralError
from corral.keys import (
    DEFAULT_PREFIX,
    SCHEDULES_CHANGED,
    queue_keys,
    queue_of_channel,
    validate_prefix,
)
from corral.schedules import Registered, registered, tick_due
from corral.scripts import Scripts

log = logging.getLogger("corral.operator")

# A wake-up for a queue; the argument is the queue's name.
OnWake = Callable[[str], None]


class RedisUnavailable(CorralError):
    """A read failed: Redis refused, dropped the connection or did not answer."""


@dataclass(frozen=True, slots=True)
class RedisSettings:
    # Depth reads asked for within this long share one round trip.
    batch_window_s: float = 0.005
    # At most this many queues per pipeline (bounded work per round trip).
    batch_max_queues: int = 1000
    # A batch not answered within this long fails every read in it.
    timeout_s: float = 5.0
    # How often the subscriber looks for channels to add or drop.
    resubscribe_s: float = 1.0
    # Wait before subscribing again after the subscription failed.
    subscribe_retry_s: float = 2.0
    max_connections: int = 8
    # The schedules registered on a queue are read again after this long even with
    # no change published (one published while the subscription was down).
    schedules_reread_s: float = 60.0


@dataclass(slots=True)
class _Read:
    queues: tuple[str, ...]
    future: asyncio.Future[dict[str, QueueDepth]]


class Server:
    """One Redis and key prefix, shared by every TaskQueue whose URL and prefix name it."""

    def __init__(self, url: str, settings: RedisSettings, ca: str | None = None,
                 prefix: str = DEFAULT_PREFIX) -> None:
        self.url = url
        self.ca = ca  # PEM text of the CA that signs a rediss:// server's certificate
        self.prefix = validate_prefix(prefix)  # of every key and channel read here
        self._settings = settings
        self._redis: Redis = connect(url, max_connections=settings.max_connections, ca_data=ca)
        self._scripts = Scripts.register(self._redis)
        self._pending: list[_Read] = []
        self._flush_timer: asyncio.TimerHandle | None = None
        # One pipeline in flight at a time: reads asked for meanwhile go in the next.
        self._in_flight: asyncio.Task[None] | None = None
        self._watchers: dict[str, set[OnWake]] = {}
        self._subscriber: asyncio.Task[None] | None = None
        # Per queue: when its schedules were read (monotonic s), and what was read.
        self._schedules: dict[str, tuple[float, list[Registered]]] = {}
        self.round_trips = 0  # pipelines sent, for tests and metrics
        self.subscribed = False  # to the wake channels of every watched queue

    # -- depth reads -----------------------------------------------------------------

    async def depths(self, queues: Sequence[str]) -> dict[str, QueueDepth]:
        """The depths of ``queues``, read together with the other reads of this window.
        Raises RedisUnavailable when Redis cannot answer."""
        loop = asyncio.get_running_loop()
        read = _Read(tuple(queues), loop.create_future())
        self._pending.append(read)
        if self._flush_timer is None and self._in_flight is None:
            self._flush_timer = loop.call_later(self._settings.batch_window_s, self._flush)
        return await read.future

    async def depths_now(self, queues: Sequence[str]) -> dict[str, QueueDepth]:
        """The depths of ``queues`` in a round trip of their own, sent at once, not
        after a window nor behind a pipeline in flight: for a wake-up, which is
        waited on. Raises RedisUnavailable when Redis cannot answer."""
        try:
            return await self._read(list(queues))
        except (RedisError, OSError, TimeoutError) as exc:
            raise RedisUnavailable(f"redis: {str(exc) or type(exc).__name__}") from exc

    def _flush(self) -> None:
        self._flush_timer = None
        batch, self._pending = self._pending, []
        self._in_flight = asyncio.get_running_loop().create_task(self._send(batch))
        self._in_flight.add_done_callback(self._sent)

    def _sent(self, _: asyncio.Task[None]) -> None:
        self._in_flight = None
        if self._pending and self._flush_timer is None:
            self._flush()  # what came in meanwhile has waited long enough

    async def _send(self, batch: list[_Read]) -> None:
        wanted = [r for r in batch if not r.future.done()]  # a waiter may have given up
        queues = list(dict.fromkeys(q for r in wanted for q in r.queues))
        try:
            found = await self._read(queues)
        except (RedisError, OSError, TimeoutError) as exc:
            failure = RedisUnavailable(f"redis: {str(exc) or type(exc).__name__}")
            for r in wanted:
                if not r.future.done():
                    r.future.set_exception(failure)
            await self._reconnect()
            return
        for r in wanted:
            if not r.future.done():
                r.future.set_result({q: found[q] for q in r.queues})

    async def _read(self, queues: list[str]) -> dict[str, QueueDepth]:
        found: dict[str, QueueDepth] = {}
        step = self._settings.batch_max_queues
        async with asyncio.timeout(self._settings.timeout_s):
            for start in range(0, len(queues), step):
                self.round_trips += 1
                found |= await read_queue_depths(self._redis, queues[start:start + step],
                                                 self._scripts, prefix=self.prefix)
        return found

    async def _reconnect(self) -> None:
        """A fresh client after a failure: a connection cut mid-reply is not reused."""
        old, self._redis = self._redis, connect(
            self.url, max_connections=self._settings.max_connections, ca_data=self.ca)
        self._scripts = Scripts.register(self._redis)
        with contextlib.suppress(RedisError, OSError):
            await old.aclose()

    # -- periodic tasks ----------------------------------------------------------------

    async def tick_schedules(self, queues: Sequence[str]) -> int:
        """Enqueue the due ticks of the periodic tasks registered on ``queues``, each
        once whoever else (a worker) ticks them too. Returns how many were enqueued; a
        failure is logged and counts as none (the depth read reports Redis's state)."""
        now_ms = time.time_ns() // 1_000_000
        enqueued = 0
        try:
            async with asyncio.timeout(self._settings.timeout_s):
                for queue in queues:
                    entries = await self._registered(queue)
                    if not entries:
                        continue
                    count, kept = await tick_due(self._scripts, entries, now_ms,
                                                 prefix=self.prefix)
                    enqueued += count
                    self._schedules[queue] = (self._schedules[queue][0], kept)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("periodic tasks of %s not ticked: %s", ", ".join(queues),
                        str(exc) or type(exc).__name__)
        return enqueued

    async def _registered(self, queue: str) -> list[Registered]:
        read_s, entries = self._schedules.get(queue, (float("-inf"), []))
        if time.monotonic() - read_s >= self._settings.schedules_reread_s:
            entries = await registered(self._redis, queue, prefix=self.prefix)
            self._schedules[queue] = (time.monotonic(), entries)
        return entries

    # -- wake-ups --------------------------------------------------------------------

    def watch(self, queues: Sequence[str], on_wake: OnWake) -> None:
        """Call ``on_wake(queue)`` when a wake-up is published for one of ``queues``,
        and for each of them after the subscription was (re)established, since
        anything published meanwhile was missed."""
        for queue in queues:
            self._watchers.setdefault(queue, set()).add(on_wake)
        if self._subscriber is None:
            self._subscriber = asyncio.get_running_loop().create_task(self._subscribe())

    def unwatch(self, queues: Sequence[str], on_wake: OnWake) -> None:
        for queue in queues:
            watchers = self._watchers.get(queue)
            if watchers is not None:
                watchers.discard(on_wake)
                if not watchers:
                    del self._watchers[queue]

    def _dispatch(self, queues: Sequence[str]) -> None:
        for queue in queues:
            for on_wake in list(self._watchers.get(queue, ())):
                try:
                    on_wake(queue)
                except Exception:
                    log.exception("wake-up handler failed for queue %s", queue)

    async def _subscribe(self) -> None:
        """Subscribed for as long as the server is in use, through Redis outages."""
        while True:
            try:
                await self._listen()
            except (RedisError, OSError) as exc:
                log.warning("wake-up subscription to %s failed, polling meanwhile: %s",
                            redact(self.url), exc or type(exc).__name__)
                await asyncio.sleep(self._settings.subscribe_retry_s)

    async def _listen(self) -> None:
        # Channels: shard subscriptions on a Redis 7+ Cluster, where the scripts
        # SPUBLISH a wake-up to the queue's own shard.
        channels = Channels(self._redis)
        subscribed: set[str] = set()
        try:
            while True:
                wanted = {queue_keys(q, self.prefix).wake_channel for q in self._watchers}
                added = wanted - subscribed
                if added:
                    await channels.subscribe(*added)
                    for channel in added:  # a change may have been published meanwhile
                        self._schedules.pop(queue_of_channel(channel), None)
                    self._dispatch([queue_of_channel(c) for c in added])  # missed ones
                if subscribed - wanted:
                    await channels.unsubscribe(*(subscribed - wanted))
                subscribed = wanted
                self.subscribed = True
                if not subscribed:
                    await asyncio.sleep(self._settings.resubscribe_s)
                    continue
                message = await channels.get_within(self._settings.resubscribe_s)
                if message is not None:
                    queue = queue_of_channel(message[0])
                    if message[1] == SCHEDULES_CHANGED.encode():
                        self._schedules.pop(queue, None)
                    self._dispatch([queue])
        finally:
            self.subscribed = False
            with contextlib.suppress(Exception):
                await channels.aclose()

    # -- lifecycle -------------------------------------------------------------------

    async def close(self) -> None:
        if self._subscriber is not None:
            self._subscriber.cancel()
            await asyncio.gather(self._subscriber, return_exceptions=True)
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush()
        while self._in_flight is not None:
            await asyncio.gather(self._in_flight, return_exceptions=True)
        with contextlib.suppress(RedisError, OSError):
            await self._redis.aclose()


class Servers:
    """The shared :class:`Server` of each Redis URL and key prefix, kept while a
    TaskQueue uses it."""

    def __init__(self, settings: RedisSettings | None = None) -> None:
        self.settings = settings or RedisSettings()
        self._by_url: dict[tuple[str, str | None, str], tuple[Server, int]] = {}

    def acquire(self, url: str, ca: str | None = None, prefix: str = DEFAULT_PREFIX) -> Server:
        server, users = self._by_url.get((url, ca, prefix)) or (None, 0)
        if server is None:
            log.info("connecting to redis at %s (key prefix %s)", redact(url), prefix)
            server = Server(url, self.settings, ca, prefix)
        self._by_url[url, ca, prefix] = (server, users + 1)
        return server

    async def release(self, server: Server) -> None:
        key = (server.url, server.ca, server.prefix)
        entry = self._by_url.get(key)
        if entry is None or entry[0] is not server:
            return
        if entry[1] > 1:
            self._by_url[key] = (server, entry[1] - 1)
            return
        del self._by_url[key]
        await server.close()

    async def close(self) -> None:
        servers, self._by_url = [s for s, _ in self._by_url.values()], {}
        await asyncio.gather(*(s.close() for s in servers), return_exceptions=True)
