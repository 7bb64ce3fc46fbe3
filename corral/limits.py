"""Rate and concurrency limits of a task: parsing, and the form stored in its record.

The producer writes a task's limits into its record at enqueue (field ``limit``), so
the claim, finish and heartbeat scripts enforce them with no lookup elsewhere:

    ``<concurrency>|<rate count>|<rate period ms>|<limit id>``

0 means "no such limit". The limit id is the task's name, then ``|`` and the limit key
for per-key limits; the scripts keep each limit's state in keys named after it, under
the queue's hash tag (``_lua/limits.lua``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_PERIODS_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000}
_RATE = re.compile(r"^\s*([0-9]+)\s*/\s*([smh])\s*$")
MAX_LIMIT_KEY_CHARS = 200

LimitKey = Callable[..., Any]
"""Called with the task's arguments at enqueue; returns the key (str or int)."""


@dataclass(frozen=True, slots=True)
class Rate:
    """``count`` tasks per ``period_ms``, spread evenly (one every period / count)."""

    count: int
    period_ms: int

    @property
    def interval_ms(self) -> float:
        return self.period_ms / self.count


def parse_rate(text: str) -> Rate:
    """``"100/s"``, ``"30/m"`` or ``"500/h"``; ValueError for anything else."""
    match = _RATE.match(text)
    if match is None:
        raise ValueError(f"rate limit must look like '100/s', '30/m' or '500/h', not {text!r}")
    count = int(match.group(1))
    if count <= 0:
        raise ValueError(f"rate limit must allow at least one task, not {text!r}")
    return Rate(count, _PERIODS_MS[match.group(2)])


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits of one task; ``key`` makes them per key (one budget per key value)."""

    name: str
    rate: Rate | None = None
    concurrency: int | None = None
    key: LimitKey | None = None

    def spec(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
        """The record's ``limit`` field for one call. ValueError when the key function
        fails or returns something unusable."""
        limit_id = self.name
        if self.key is not None:
            limit_id = f"{self.name}|{limit_key_of(self.key, args, kwargs)}"
        rate = self.rate or Rate(0, 0)
        return f"{self.concurrency or 0}|{rate.count}|{rate.period_ms}|{limit_id}"


def limit_key_of(key: LimitKey, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
    try:
        value = key(*args, **kwargs)
    except Exception as exc:
        raise ValueError(f"limit_key failed: {type(exc).__name__}: {exc}") from None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"limit_key must return a str or int, not {type(value).__name__}")
    text = str(value)
    if not text or len(text) > MAX_LIMIT_KEY_CHARS:
        raise ValueError(f"limit_key must return 1-{MAX_LIMIT_KEY_CHARS} characters, "
                         f"not {len(text)}")
    return text
