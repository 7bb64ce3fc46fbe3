"""Staying up: pacing retries while Redis is away (logging each outage once),
noticing a loop stuck in one pass, and restarting a background loop that fails
unexpectedly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterator

from corral_worker.metrics import WorkerMetrics

log = logging.getLogger("corral_worker")


class RedisHealth:
    """Tracks outages so each is logged once, and paces retries."""

    def __init__(self, metrics: WorkerMetrics) -> None:
        self.reachable = True
        self._metrics = metrics
        self._failures = 0

    def failed(self, exc: BaseException, what: str) -> float:
        """Record a failure; returns how long to wait before the next try."""
        self._metrics.redis_errors += 1
        if self.reachable:
            log.warning("redis unreachable (%s: %s); retrying until it is back", what, exc)
        self.reachable = False
        self._failures += 1
        # At most 1 s: the loops share this count, and none should sleep long after Redis
        # is back.
        ceiling_s: float = min(1.0, 0.05 * 2 ** min(self._failures, 5))
        return ceiling_s * random.uniform(0.5, 1.0)

    def succeeded(self) -> None:
        if not self.reachable:
            log.warning("redis reachable again")
        self.reachable = True
        self._failures = 0


class LoopWatch:
    """When each background loop began the pass it is in. A pass that is not over
    within its deadline (a Redis call that hangs, an outage that will not end) makes
    the worker not ready."""

    def __init__(self) -> None:
        self._passes: dict[str, tuple[float, float]] = {}  # name -> (began_at, deadline_s)

    @contextlib.contextmanager
    def pass_of(self, name: str, deadline_s: float) -> Iterator[None]:
        self._passes[name] = (time.monotonic(), deadline_s)
        try:
            yield
        finally:
            del self._passes[name]

    def overdue(self, now: float | None = None) -> list[str]:
        """The loops whose current pass has run past its deadline."""
        if now is None:
            now = time.monotonic()
        return sorted(name for name, (began_at, deadline_s) in self._passes.items()
                      if now - began_at > deadline_s)


async def survive(loop: Callable[[], Awaitable[None]], name: str) -> None:
    """A background loop that fails unexpectedly is logged and started again."""
    while True:
        try:
            await loop()
            return
        except Exception:
            log.exception("background loop %s failed; restarting it", name)
            await asyncio.sleep(1.0)
