"""One scheduler for every TaskQueue of the process, instead of a loop and a timer
each: it takes the TaskQueues that are due (``corral_operator.schedule``), reads
the queues of all of them with one pipelined read per Redis server, then runs
their passes with what was read. A pass that finds nothing to change makes no
request at all; a slow one (a Kubernetes write timing out) delays only its own
TaskQueue.

A wake-up (work in an empty queue, a spec change) makes a TaskQueue due at once:
the scheduler reads just its queues and runs its pass, between the passes of a
tick rather than after them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from corral.depths import QueueDepth
from corral_operator.redis_io import RedisUnavailable, Server
from corral_operator.schedule import Schedule

log = logging.getLogger("corral.operator")

# Passes started per turn of the event loop: in between, wake-ups and replies are
# handled, so a tick of a thousand passes does not hold them back.
PASSES_PER_TURN = 50


@dataclass(frozen=True, slots=True)
class Prefetched:
    """What the scheduler read for a pass: the depths of its queues on ``server``,
    or why they could not be read."""

    server: Server
    depths: dict[str, QueueDepth] | None
    error: RedisUnavailable | None = None


class Polled(Protocol):
    """A TaskQueue as the scheduler sees it."""

    @property
    def uid(self) -> str: ...

    @property
    def grid_s(self) -> float: ...

    def planned_read(self) -> tuple[Server, Sequence[str]] | None:
        """The server and queues its next pass reads; None: it reads on its own."""

    async def poll(self, prefetched: Prefetched | None) -> float:
        """One pass; the seconds until the next one. Never raises."""


class Scheduler:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._schedule: Schedule[str] = Schedule()
        self._polled: dict[str, Polled] = {}
        self._busy: dict[str, asyncio.Future[None]] = {}  # uid -> its pass, until done
        self._changed: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._spawned: set[asyncio.Task[None]] = set()
        self._urgent: set[str] = set()  # woken: read at once, on their own
        # When the loop's timer fires (inf: no timer): a pass that ends sooner due
        # must wake it, the others need not (a thousand timers a tick is the cost
        # this scheduler is here to save).
        self._sleeping_until = float("inf")
        self.ticks = 0  # batches started, for tests

    def __len__(self) -> int:
        return len(self._polled)

    def add(self, polled: Polled) -> None:
        """Schedule a TaskQueue; its first pass is due at once."""
        self._polled[polled.uid] = polled
        self._schedule.add(polled.uid, polled.grid_s, self._clock())
        self._poke()

    async def remove(self, uid: str) -> None:
        """Unschedule a TaskQueue; returns once its running pass (if any) is over."""
        self._polled.pop(uid, None)
        self._schedule.remove(uid)
        if self._changed is not None:
            self._changed.set()  # the loop ends with the last TaskQueue
        busy = self._busy.get(uid)
        if busy is not None:
            await asyncio.shield(busy)

    def wake(self, uid: str) -> None:
        """Run the TaskQueue's pass now (after its running one, if any)."""
        if uid in self._polled:
            self._schedule.wake(uid)
            self._urgent.add(uid)
            self._poke()

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await asyncio.gather(*self._spawned, return_exceptions=True)

    # -- the loop --------------------------------------------------------------------------

    def _poke(self) -> None:
        if self._changed is None:
            self._changed = asyncio.Event()
        self._changed.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(),
                                                                name="corral:scheduler")

    async def _run(self) -> None:
        """Until no TaskQueue is left (``add`` starts it again)."""
        assert self._changed is not None
        loop = asyncio.get_running_loop()
        while self._polled or self._busy:
            self._changed.clear()
            due = self._schedule.take(self._clock())
            if due:
                self.ticks += 1
                self._spawn(self._start(due))
            next_s = self._schedule.next_due_s()
            if next_s is not None and next_s <= self._clock():
                await asyncio.sleep(0)
                continue
            timer = None if next_s is None else loop.call_later(
                next_s - self._clock(), self._changed.set)
            self._sleeping_until = float("inf") if next_s is None else next_s
            try:
                await self._changed.wait()
            finally:
                self._sleeping_until = float("-inf")  # awake: sees every change
                if timer is not None:
                    timer.cancel()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._spawned.add(task)
        task.add_done_callback(self._spawned.discard)

    async def _start(self, due: list[str]) -> None:
        """Read per server for every due TaskQueue that knows its queues, then run the
        passes (those that do not know yet read on their own, batched by the server)."""
        loop = asyncio.get_running_loop()
        by_server: dict[Server, list[tuple[Polled, Sequence[str]]]] = {}
        # Woken ones: read at once, one round trip per server for all woken together
        # (a resubscription wakes every idle TaskQueue at once).
        urgent: dict[Server, list[tuple[Polled, Sequence[str]]]] = {}
        alone: list[Polled] = []
        for uid in due:
            polled = self._polled.get(uid)
            if polled is None:
                continue  # removed since it was taken
            self._busy[uid] = loop.create_future()
            plan = polled.planned_read()
            if plan is None:
                alone.append(polled)
            elif uid in self._urgent:
                urgent.setdefault(plan[0], []).append((polled, plan[1]))
            else:
                by_server.setdefault(plan[0], []).append((polled, plan[1]))
            self._urgent.discard(uid)
        for polled in alone:
            self._spawn(self._poll(polled, None))
        await asyncio.gather(
            *(self._read_then_poll(server, group, at_once=True)
              for server, group in urgent.items()),
            *(self._read_then_poll(server, group) for server, group in by_server.items()),
            return_exceptions=True)

    async def _read_then_poll(self, server: Server, group: list[tuple[Polled, Sequence[str]]],
                              at_once: bool = False) -> None:
        queues = list(dict.fromkeys(q for _, qs in group for q in qs))
        found: Prefetched | None
        try:
            read = server.depths_now if at_once else server.depths
            found = Prefetched(server, await read(queues))
        except RedisUnavailable as exc:
            found = Prefetched(server, None, exc)
        except Exception:  # the passes read on their own: no TaskQueue is left waiting
            log.exception("reading the queues of %d TaskQueues failed", len(group))
            found = None
        for i, (polled, _) in enumerate(group):
            if i and i % PASSES_PER_TURN == 0:
                await asyncio.sleep(0)
            self._spawn(self._poll(polled, found))

    async def _poll(self, polled: Polled, prefetched: Prefetched | None) -> None:
        delay_s = 0.0
        try:
            delay_s = await polled.poll(prefetched)
        except Exception:  # poll never raises; this keeps the schedule going if it does
            log.exception("pass of TaskQueue %s failed", polled.uid)
            delay_s = 10.0
        finally:
            self._done(polled.uid, delay_s)

    def _done(self, uid: str, delay_s: float) -> None:
        due_s = self._schedule.done(uid, delay_s, self._clock())
        busy = self._busy.pop(uid, None)
        if busy is not None and not busy.done():
            busy.set_result(None)
        if due_s is not None and due_s < self._sleeping_until and self._changed is not None:
            self._changed.set()
        if not self._polled and not self._busy and self._changed is not None:
            self._changed.set()  # the loop ends

