"""Measuring a server's own time on a machine shared with other work."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


@contextlib.contextmanager
def first_in_line(pid: int) -> Iterator[bool]:
    """Run process ``pid`` with real-time priority (SCHED_FIFO) meanwhile, so that a
    duration it reports (SLOWLOG) is its own work, not time spent waiting for a CPU that
    other processes held. Yields whether that was allowed (it needs CAP_SYS_NICE)."""
    try:
        before = os.sched_getscheduler(pid), os.sched_getparam(pid)
        os.sched_setscheduler(pid, os.SCHED_FIFO, os.sched_param(1))
    except (PermissionError, OSError):
        yield False
        return
    try:
        yield True
    finally:
        with contextlib.suppress(OSError):
            os.sched_setscheduler(pid, before[0], before[1])
