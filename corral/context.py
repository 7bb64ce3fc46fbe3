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
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

# (queue, task id, fraction, message): the worker writes the latest with its next flush.
ProgressSink = Callable[[str, str, float, str], None]
MAX_PROGRESS_MESSAGE = 500


# Not frozen: a frozen dataclass's __init__ costs more, and this is made for every attempt.
@dataclass(slots=True)
class TaskContext:
    """The running attempt. ``attempt`` is 1 on the first run."""

    id: str
    name: str
    queue: str
    attempt: int
    enqueued_at_ms: int  # when it became ready to run (Redis's clock)
    # time.monotonic() at which the attempt times out, 0 without a timeout; a callable
    # because a plain function's clock starts only once it has a thread.
    _deadline_monotonic: Callable[[], float] = field(repr=False, compare=False)
    _progress: ProgressSink = field(repr=False, compare=False)

    @property
    def enqueued_at(self) -> datetime:
        return datetime.fromtimestamp(self.enqueued_at_ms / 1000, UTC)

    @property
    def deadline(self) -> datetime | None:
        """When the attempt times out; None without a timeout."""
        at = self._deadline_monotonic()
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
