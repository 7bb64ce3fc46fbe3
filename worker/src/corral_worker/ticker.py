"""Ticking the app's periodic tasks from every worker.

Each worker registers its app's schedules at start-up and again every
``REGISTER_EVERY_S`` (so schedules lost with Redis's data come back, and one dropped
from the app is removed once the workers that still have it are gone).

Every worker ticks every schedule of its app, with no leader: the tick script enqueues
each tick once, whichever worker (or the operator) comes first. The ticker sleeps
until the next tick is due, so a tick is enqueued within a few milliseconds of its
time while any worker runs. Time is Redis's: the script refuses ticks that are not
due by its clock, and the ticker corrects its own clock by what the script answers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence

from corral.periodic import Schedule
from corral.schedules import Ticked, register, tick
from corral.scripts import Scripts

log = logging.getLogger("corral_worker")

# A tick refused as early (this clock ahead of Redis's) is tried again this soon.
EARLY_RETRY_S = 0.02
REGISTER_EVERY_S = 60.0


def _local_ms() -> int:
    return time.time_ns() // 1_000_000


class Ticker:
    """The schedules of one app, and what this worker knows of their last ticks."""

    def __init__(self, scripts: Scripts, schedules: Sequence[Schedule],
                 owned_queues: Iterable[str], *, prefix: str) -> None:
        self._scripts = scripts
        self._prefix = prefix
        self._schedules = list(schedules)
        self._owned = list(owned_queues)
        self._last_ms: dict[str, int] = {}
        self._offset_ms = 0  # Redis's clock minus this one
        self._registered = False
        self.enqueued = 0

    def now_ms(self) -> int:
        """Redis's clock, as well as this process knows it."""
        return _local_ms() + self._offset_ms

    async def register(self) -> None:
        """Store the app's schedules in Redis (at start-up, then now and then)."""
        redis_ms = await register(self._scripts, self._schedules, self._owned,
                                  prefix=self._prefix)
        self._offset_ms = redis_ms - _local_ms()
        if not self._registered:
            names = ", ".join(f"{s.name} ({s.describe()})" for s in self._schedules)
            log.info("periodic tasks registered: %s", names)
            self._registered = True

    async def tick_due(self) -> float:
        """Enqueue whatever is due; returns the seconds until the next tick."""
        wait_ms: list[float] = []
        for schedule in self._schedules:
            ticked = await self._tick(schedule)
            if not ticked.registered:
                # Dropped by a newer version of the app (or lost with Redis's data): not
                # ticked until this worker registers its schedules again.
                log.debug("periodic task %s is not registered", schedule.name)
            now_ms = self.now_ms()
            last_ms = self._last_ms.get(schedule.name)
            if last_ms is not None and schedule.due(last_ms, now_ms):
                wait_ms.append(0)  # refused as early by Redis's clock: again soon
            else:
                wait_ms.append(schedule.next_after(now_ms) - now_ms)
        if not wait_ms:
            return 3600.0
        return max(EARLY_RETRY_S, min(wait_ms) / 1000)

    async def _tick(self, schedule: Schedule) -> Ticked:
        now_ms = self.now_ms()
        last_ms = self._last_ms.get(schedule.name)
        if last_ms is not None and not schedule.due(last_ms, now_ms):
            return Ticked(last_ms, now_ms, (), True)
        # An unknown last tick: the script tells it (nothing is due from "now").
        ticked = await tick(self._scripts, schedule, now_ms if last_ms is None else last_ms,
                            now_ms, prefix=self._prefix)
        self._offset_ms = ticked.now_ms - _local_ms()
        if not ticked.registered:
            self._last_ms.pop(schedule.name, None)
            return ticked
        self._last_ms[schedule.name] = ticked.last_ms
        if ticked.ids:
            self.enqueued += len(ticked.ids)
            log.info("periodic task %s: enqueued %s", schedule.name, " ".join(ticked.ids))
        elif last_ms is None:
            return await self._tick(schedule)  # now that the last tick is known
        return ticked
