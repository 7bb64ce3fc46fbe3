"""Staying up: pacing retries while Redis is away (logging each outage once) and
restarting a background loop that fails unexpectedly."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

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


async def survive(loop: Callable[[], Awaitable[None]], name: str) -> None:
    """A background loop that fails unexpectedly is logged and started again."""
    while True:
        try:
            await loop()
            return
        except Exception:
            log.exception("background loop %s failed; restarting it", name)
            await asyncio.sleep(1.0)
