"""The states a task's record goes through: one list, shared by the client, the command
line, the dashboard and ``corral top`` (the Lua scripts name the same strings in
``_lua/prelude.lua``)."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """A task's state. A ``str``: it compares equal to its stored name."""

    QUEUED = "queued"  # waiting in a ready list
    SCHEDULED = "scheduled"  # waiting for its time (a delay or a retry backoff)
    PREFETCHED = "prefetched"  # claimed by a worker, waiting there for a free slot
    RUNNING = "running"  # started on a worker
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    DEAD = "dead"  # in the dead-letter queue
    UNKNOWN = "unknown"  # no record: never enqueued, or expired

    @classmethod
    def of(cls, stored: bytes | str | None) -> Status:
        """The state a record holds; a missing or damaged one is UNKNOWN."""
        if stored is None:
            return cls.UNKNOWN
        text = stored.decode(errors="replace") if isinstance(stored, bytes) else stored
        try:
            return cls(text)
        except ValueError:
            return cls.UNKNOWN


FINAL_STATES = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED, Status.DEAD})
LIVE_STATES = frozenset({Status.QUEUED, Status.SCHEDULED, Status.PREFETCHED, Status.RUNNING})
