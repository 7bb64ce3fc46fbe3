"""``corral.current_task()``: what a running task knows about itself. The worker sets it
(a context variable) around each attempt, in async and thread-run tasks alike.

Side effects should be keyed by ``current_task().id``: a task can run more than once
(a retry, or a lease taken over after a worker died), but its id never changes.
"""

from __future__ import annotations

import contextvars
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

# (queue, task id, fraction, message): the worker writes the latest with its next flush.
ProgressSink = Callable[[str, str, float, str], None]
MAX_PROGRESS_MESSAGE = 500


class Attempt(Protocol):
    """What the worker holds for a running attempt (its claimed job)."""

    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def queue(self) -> str: ...
    @property
    def attempts(self) -> int: ...
    @property
    def ready_ms(self) -> int: ...
    @property
    def deadline(self) -> float: ...  # time.monotonic() of the timeout, 0 for none


class TaskContext:
    """The running attempt, as ``current_task()`` returns it. ``attempt`` is 1 on the
    first run. A view of the worker's own record of the attempt: made only when asked
    for, so an attempt that never asks costs nothing."""

    __slots__ = ("_attempt", "_progress")

    def __init__(self, attempt: Attempt, progress: ProgressSink) -> None:
        self._attempt = attempt
        self._progress = progress

    def __repr__(self) -> str:
        return f"TaskContext(id={self.id!r}, name={self.name!r}, attempt={self.attempt})"

    @property
    def id(self) -> str:
        return self._attempt.id

    @property
    def name(self) -> str:
        return self._attempt.name

    @property
    def queue(self) -> str:
        return self._attempt.queue

    @property
    def attempt(self) -> int:
        return self._attempt.attempts

    @property
    def enqueued_at(self) -> datetime:
        """When it became ready to run (Redis's clock)."""
        return datetime.fromtimestamp(self._attempt.ready_ms / 1000, UTC)

    @property
    def deadline(self) -> datetime | None:
        """When the attempt times out; None without a timeout (a plain function's clock
        starts only once it has a thread)."""
        at = self._attempt.deadline
        if not at:
            return None
        return datetime.now(UTC) + timedelta(seconds=at - time.monotonic())

    def set_progress(self, fraction: float, message: str = "") -> None:
        """Report progress (0.0 to 1.0, and a short message); ``handle.progress()`` and
        ``corral status`` show the latest. Cheap to call often: only the latest value
        is written, batched with the worker's other writes."""
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) \
                or not math.isfinite(fraction) or not 0 <= fraction <= 1:
            raise ValueError(f"progress must be a number from 0 to 1, not {fraction!r}")
        self._progress(self.queue, self.id, float(fraction), str(message)[:MAX_PROGRESS_MESSAGE])


_current: contextvars.ContextVar[TaskContext] = contextvars.ContextVar("corral_task")


def current_task() -> TaskContext:
    """The task this code runs in; ``LookupError`` outside a task."""
    try:
        return _current.get()
    except LookupError:
        raise LookupError("corral.current_task() is only available inside a running task") \
            from None


def entering(context: TaskContext) -> contextvars.Token[TaskContext]:
    """Set the current task (the worker calls this in the task's own context)."""
    return _current.set(context)


def leaving(token: contextvars.Token[TaskContext]) -> None:
    """Undo :func:`entering` at the end of the attempt."""
    _current.reset(token)
