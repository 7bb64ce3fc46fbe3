"""``corral.current_task()``: what a running task knows about itself. The worker sets it
(a context variable) around each attempt, in async and thread-run tasks alike.

Side effects should be keyed by ``current_task().id``: a task can run more than once
(a retry, or a lease taken over after a worker died), but its id never changes.
"""

from __future__ import annotations

import contextvars
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

ProgressSink = Callable[[str, str, float, str], None]


@dataclass(frozen=True, slots=True)
class TaskContext:
    """The running attempt. ``attempt`` is 1 on the first run; ``deadline`` is when the
    attempt times out (``None`` without a timeout)."""

    id: str
    name: str
    queue: str
    attempt: int
    enqueued_at: datetime
    deadline: datetime | None
    # Where progress goes: the worker writes the latest value with its next batch.
    _progress: ProgressSink = field(repr=False, compare=False)

    def set_progress(self, fraction: float, message: str = "") -> None:
        """Report progress (0.0 to 1.0, and a short message); ``handle.progress()`` and
        ``corral status`` show the latest. Cheap to call often: only the latest value
        is written, batched with the worker's other writes."""
        if not isinstance(fraction, (int, float)) or not math.isfinite(fraction):
            raise ValueError(f"progress must be a number from 0 to 1, not {fraction!r}")
        if not 0 <= fraction <= 1:
            raise ValueError(f"progress must be from 0 to 1, not {fraction}")
        self._progress(self.queue, self.id, float(fraction), str(message)[:500])


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
