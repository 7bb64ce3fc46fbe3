"""Periodic tasks: schedules and the pure computation of their ticks (no I/O).

A schedule ticks either ``every`` so many seconds, aligned on the Unix epoch so that
every process agrees on the tick times without talking to the others, or by a cron
expression in a time zone (evaluated by cronsim, which handles daylight saving time
like Debian's cron). The caller of the tick script (a worker, the operator) works out
which ticks are due with :func:`due_ticks`; the script enqueues each of them once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from cronsim import CronSim

# A tick found later than this after its time counts as missed (``catch_up="none"``
# skips it). It covers a worker's tick loop (about 1 s late at most) and the
# operator's poll (``pollSeconds``, which ticks when no worker runs).
ON_TIME_MS = 60_000
# The most missed ticks ``catch_up="all"`` enqueues in one go (bounded work per call).
MAX_CATCH_UP = 1000
DEFAULT_MAX_CATCH_UP = 100


class CatchUp(StrEnum):
    """What a schedule does with ticks missed while nothing ticked it."""

    LATEST = "latest"  # enqueue the latest missed tick only
    ALL = "all"  # enqueue every missed tick, up to max_catch_up of the latest
    NONE = "none"  # enqueue none: only ticks found on time run


@dataclass(frozen=True, slots=True)
class Every:
    """Ticks at every multiple of ``interval_ms`` since the Unix epoch."""

    interval_ms: int


@dataclass(frozen=True, slots=True)
class Cron:
    """Ticks when the cron expression matches the wall clock of ``timezone``."""

    expression: str
    timezone: str


Cadence = Every | Cron


def check_cron(expression: str, timezone: str) -> str | None:
    """Why the expression or the time zone cannot be used, or None."""
    try:
        zone = ZoneInfo(timezone)
    except (ValueError, KeyError, OSError):
        return f"unknown time zone {timezone!r}"
    try:
        next(iter(CronSim(expression, datetime.now(zone))))
    except Exception as exc:  # cronsim raises CronSimError, and others on odd input
        return f"invalid cron expression {expression!r}: {exc}"
    return None


def _at(ms: int, cron: Cron) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC).astimezone(ZoneInfo(cron.timezone))


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def next_tick_ms(cadence: Cadence, after_ms: int) -> int:
    """The first tick strictly after ``after_ms``."""
    if isinstance(cadence, Every):
        return (after_ms // cadence.interval_ms + 1) * cadence.interval_ms
    return _ms(next(iter(CronSim(cadence.expression, _at(after_ms, cadence)))))


def latest_ticks(cadence: Cadence, after_ms: int, until_ms: int, limit: int) -> list[int]:
    """Up to ``limit`` of the latest ticks in ``(after_ms, until_ms]``, oldest first.
    Counted back from ``until_ms``, so a long gap costs no more than ``limit`` steps."""
    found: list[int] = []
    if isinstance(cadence, Every):
        tick = until_ms // cadence.interval_ms * cadence.interval_ms
        while tick > after_ms and len(found) < limit:
            found.append(tick)
            tick -= cadence.interval_ms
    else:
        # cronsim counts back from a time with milliseconds inclusively: a tick at
        # exactly until_ms is found.
        backwards = iter(CronSim(cadence.expression, _at(until_ms + 1, cadence), reverse=True))
        while len(found) < limit:
            tick = _ms(next(backwards))
            if tick <= after_ms:
                break
            if tick <= until_ms:
                found.append(tick)
    return sorted(found)


def due_ticks(
    cadence: Cadence, catch_up: CatchUp, max_catch_up: int, last_ms: int, now_ms: int
) -> list[int]:
    """The ticks to enqueue now, oldest first, when the last one enqueued was ``last_ms``."""
    if catch_up is CatchUp.ALL:
        return latest_ticks(cadence, last_ms, now_ms, max_catch_up)
    latest = latest_ticks(cadence, last_ms, now_ms, 1)
    if catch_up is CatchUp.NONE and latest and now_ms - latest[0] > ON_TIME_MS:
        return []
    return latest


@dataclass(frozen=True, slots=True)
class Schedule:
    """One periodic task: which task, on which queue, with which arguments, when."""

    name: str
    task: str
    queue: str
    cadence: Cadence
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    priority: int
    catch_up: CatchUp
    max_catch_up: int
    # The tick's task's rate and concurrency limits in the record's form (corral.limits),
    # worked out from the fixed arguments when the app registers it; "" for none.
    limit: str = ""

    def due(self, last_ms: int, now_ms: int) -> list[int]:
        return due_ticks(self.cadence, self.catch_up, self.max_catch_up, last_ms, now_ms)

    def next_after(self, ms: int) -> int:
        return next_tick_ms(self.cadence, ms)

    def describe(self) -> str:
        if isinstance(self.cadence, Every):
            return f"every {self.cadence.interval_ms / 1000:g}s"
        return f"cron {self.cadence.expression!r} {self.cadence.timezone}"

    def definition(self) -> str:
        """The JSON stored in the queue's schedules hash (what the operator and
        ``corral inspect`` read back with :func:`from_definition`)."""
        when: dict[str, Any] = (
            {"every_ms": self.cadence.interval_ms} if isinstance(self.cadence, Every)
            else {"cron": self.cadence.expression, "timezone": self.cadence.timezone}
        )
        return json.dumps({
            "task": self.task, **when, "args": list(self.args), "kwargs": self.kwargs,
            "priority": self.priority, "catch_up": self.catch_up.value,
            "max_catch_up": self.max_catch_up, "limit": self.limit,
        }, separators=(",", ":"), sort_keys=True)


def from_definition(name: str, queue: str, text: str | bytes) -> Schedule:
    """A schedule read back from Redis; raises ValueError when it cannot be used."""
    try:
        data = json.loads(text)
        cadence: Cadence
        if "every_ms" in data:
            interval_ms = data["every_ms"]
            if not isinstance(interval_ms, int) or interval_ms <= 0:
                raise ValueError(f"bad every_ms {interval_ms!r}")
            cadence = Every(interval_ms)
        else:
            cadence = Cron(str(data["cron"]), str(data["timezone"]))
            problem = check_cron(cadence.expression, cadence.timezone)
            if problem:
                raise ValueError(problem)
        max_catch_up = int(data["max_catch_up"])
        if not 1 <= max_catch_up <= MAX_CATCH_UP:
            raise ValueError(f"bad max_catch_up {max_catch_up!r}")
        args, kwargs = data["args"], data["kwargs"]
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise ValueError("args must be a list and kwargs an object")
        return Schedule(name=name, task=str(data["task"]), queue=queue, cadence=cadence,
                        args=tuple(args), kwargs=kwargs, priority=int(data["priority"]),
                        catch_up=CatchUp(data["catch_up"]), max_catch_up=max_catch_up,
                        limit=str(data.get("limit", "")))
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"schedule {name!r}: malformed definition: {exc!r}") from None


def interval_ms(every: timedelta | float) -> int:
    seconds = every.total_seconds() if isinstance(every, timedelta) else float(every)
    return round(seconds * 1000)
