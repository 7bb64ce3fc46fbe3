"""Periodic tasks in Redis: register them, read them back, tick them.

Workers tick their app's schedules; the operator ticks the schedules registered on its
TaskQueues' queues (so a tick is enqueued with no worker running); ``corral inspect``
lists them. All of them go through the ``tick`` script, which enqueues each tick once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis

from corral.keys import new_task_id, queue_keys
from corral.periodic import Schedule, from_definition
from corral.scripts import Scripts
from corral.serialization import encode_payload

log = logging.getLogger("corral")


@dataclass(frozen=True, slots=True)
class Ticked:
    """What one tick call found: the schedule's last tick, Redis's clock, the ids of
    the tasks it enqueued. ``registered`` is False for a schedule removed from Redis."""

    last_ms: int
    now_ms: int
    ids: tuple[str, ...]
    registered: bool


@dataclass(frozen=True, slots=True)
class Registered:
    """A schedule as stored in Redis, with its last tick."""

    schedule: Schedule
    last_ms: int | None

    def next_ms(self, now_ms: int) -> int:
        return self.schedule.next_after(max(self.last_ms or 0, now_ms))

    def to_json(self, now_ms: int) -> dict[str, Any]:
        """The shape ``corral inspect --json`` prints for a schedule."""
        s = self.schedule
        return {"name": s.name, "task": s.task, "when": s.describe(),
                "catch_up": s.catch_up.value, "last_tick_ms": self.last_ms,
                "next_tick_ms": self.next_ms(now_ms)}


async def register(
    scripts: Scripts, schedules: Sequence[Schedule], owned_queues: Iterable[str], *,
    prefix: str,
) -> int:
    """Store the definitions (one call per queue); the queues in ``owned_queues`` keep
    no other schedules. Returns Redis's clock in ms."""
    by_queue: dict[str, list[Schedule]] = {queue: [] for queue in owned_queues}
    owned = set(by_queue)
    for schedule in schedules:
        by_queue.setdefault(schedule.queue, []).append(schedule)
    now_ms = 0
    for queue, listed in by_queue.items():
        keys = queue_keys(queue, prefix)
        args: list[Any] = ["1" if queue in owned else "0"]
        for schedule in listed:
            args += [schedule.name, schedule.definition()]
        now_ms = int(await scripts.schedules(keys, [keys.schedules, keys.ticks], args))
    return now_ms


async def tick(scripts: Scripts, schedule: Schedule, last_ms: int, now_ms: int, *,
               prefix: str) -> Ticked:
    """Enqueue the ticks of ``schedule`` due by ``now_ms`` after ``last_ms`` (as the
    caller knows them: the script itself holds the real last tick and clock)."""
    keys = queue_keys(schedule.queue, prefix)
    due = schedule.due(last_ms, now_ms)
    ids = [new_task_id(schedule.queue) for _ in due]
    payload = encode_payload(list(schedule.args), schedule.kwargs)
    args: list[Any] = [schedule.name, schedule.task, payload, schedule.priority,
                       schedule.limit]
    for tick_ms, task_id in zip(due, ids, strict=True):
        args += [tick_ms, task_id]
    reply = await scripts.tick(keys, [keys.schedules, keys.ticks, *map(keys.task, ids)], args)
    last, clock = int(reply[0]), int(reply[1])
    return Ticked(last, clock, tuple(i.decode() for i in reply[2:]), last >= 0)


async def registered(redis: Redis, queue: str, *, prefix: str) -> list[Registered]:
    """The schedules stored for ``queue``; a definition that cannot be read is logged
    and left out."""
    keys = queue_keys(queue, prefix)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.schedules)
        pipe.hgetall(keys.ticks)
        definitions, ticks = cast(list[dict[bytes, bytes]], await pipe.execute())
    found: list[Registered] = []
    for raw_name, text in sorted(definitions.items()):
        name = raw_name.decode()
        try:
            schedule = from_definition(name, queue, text)
        except ValueError as exc:
            log.warning("queue %s: schedule %s not usable: %s", queue, name, exc)
            continue
        last = ticks.get(raw_name)
        found.append(Registered(schedule, int(last) if last else None))
    return found


async def tick_due(scripts: Scripts, entries: Sequence[Registered], now_ms: int, *,
                   prefix: str) -> tuple[int, list[Registered]]:
    """Tick each of ``entries`` that has a tick due by ``now_ms`` (the caller's clock).
    Returns how many tasks were enqueued, and the entries with their last ticks as the
    script left them (a schedule removed from Redis meanwhile is left out). An entry's
    ``last_ms`` may be older than Redis's: the script then enqueues nothing and says
    which tick is the last."""
    enqueued, kept = 0, []
    for entry in entries:
        if entry.last_ms is None or not entry.schedule.due(entry.last_ms, now_ms):
            kept.append(entry)
            continue
        ticked = await tick(scripts, entry.schedule, entry.last_ms, now_ms, prefix=prefix)
        enqueued += len(ticked.ids)
        if ticked.registered:
            kept.append(Registered(entry.schedule, ticked.last_ms))
    return enqueued, kept

