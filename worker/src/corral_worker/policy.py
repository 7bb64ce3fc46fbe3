"""What to do after an attempt fails. Pure code, no I/O."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

# Attempts whose lease ran out (the worker died or lost Redis) are counted like any
# other, but a task gets this many more before it is taken for a poison pill.
LOST_ATTEMPTS_ALLOWANCE = 10


def retry_delay_s(
    attempt: int, base_s: float, max_s: float, rand: random.Random | None = None
) -> float:
    """Exponential backoff with jitter: ``base_s * 2**(attempt-1)`` capped at ``max_s``,
    then spread over [50%, 100%] so that tasks that failed together do not retry together."""
    ceiling = min(max_s, base_s * 2.0 ** min(attempt - 1, 60))
    fraction: float = (rand or random).random()
    return ceiling * (0.5 + 0.5 * fraction)


@dataclass(frozen=True, slots=True)
class AfterFailure:
    outcome: Literal["retry", "dead", "failed"]
    delay_s: float = 0.0


def after_failure(
    attempts: int,
    retries: int,
    dead_letter: bool,
    base_s: float,
    max_s: float,
    rand: random.Random | None = None,
) -> AfterFailure:
    """Retry while attempts are left; then dead-letter (or end ``failed``)."""
    if attempts <= retries:
        return AfterFailure("retry", retry_delay_s(attempts, base_s, max_s, rand))
    return AfterFailure("dead" if dead_letter else "failed")


def is_poison(attempts: int, retries: int) -> bool:
    """Claimed more often than retries and lost leases can explain."""
    return attempts > retries + 1 + LOST_ATTEMPTS_ALLOWANCE
