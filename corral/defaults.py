"""The worker's tunables that more than one component states: default and bounds of
each, written once.

The worker's settings (``corral_worker.settings``), its command line and the
operator's TaskQueue schema (``corral_operator.models``, and so the CRD) all read
them here. They live in the core because the worker and the operator never import
each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args


@dataclass(frozen=True, slots=True)
class Bounded:
    """A default and the inclusive range a value must lie in."""

    default: int
    min: int
    max: int


CONCURRENCY = Bounded(default=50, min=1, max=10_000)
"""Tasks running at once in one worker process."""

BATCH_SIZE = Bounded(default=25, min=1, max=1_000)
"""Tasks claimed per round trip and prefetched per queue."""

LEASE_S = Bounded(default=30, min=2, max=86_400)
"""Lease per claimed task, renewed while it runs."""

GRACE_S = Bounded(default=30, min=0, max=86_400)
"""On SIGTERM, how long running tasks may finish."""

ATTEMPTS_KEPT = 10
"""Ended attempts a task record keeps in its history (``corral show``): the latest."""

TRACEBACK_MAX_CHARS = 16_000
"""A traceback is stored up to this long: its start and its end (the innermost frames
and the exception), with a marker where the middle was cut."""

ERROR_MESSAGE_MAX_CHARS = 4_000
"""An error message is stored up to this long."""

METRICS_PORT = 9100
"""Port of the worker's /metrics, /healthz, /readyz and /debug/tasks."""

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
LOG_LEVELS: tuple[LogLevel, ...] = get_args(LogLevel)
LOG_LEVEL: LogLevel = "INFO"
