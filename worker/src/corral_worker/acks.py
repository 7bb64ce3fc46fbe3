"""One queue's claimed tasks: the leases the worker holds, and the outcomes waiting to
be sent. A lease is let go only once its outcome is recorded. Leases, not task ids, are
the keys: the same task claimed again (its first lease ran out) is another lease.

Starts go the same way: a task's record turns from prefetched to running with the next
batch the loop sends, in order before the task's outcome."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from corral_worker.broker import Ack, Job, Lease, Outcome, Started


class AckBuffer:
    def __init__(self) -> None:
        self.held: dict[Lease, Job] = {}  # claimed and not yet acknowledged
        self._latest: dict[str, Job] = {}  # the newest lease held on each task id
        self._pending: list[Ack] = []
        self._wanted = asyncio.Event()
        self._closing = False

    def __len__(self) -> int:
        """Outcomes waiting to be sent."""
        return len(self._pending)

    def hold(self, job: Job) -> Job | None:
        """Hold a new lease; returns an older one held on the same task, if any."""
        self.held[job.lease] = job
        previous = self._latest.get(job.id)
        self._latest[job.id] = job
        return previous

    def forget(self, job: Job) -> None:
        """Let a lease go without an outcome (it has passed to another worker)."""
        self.held.pop(job.lease, None)
        if self._latest.get(job.id) is job:
            del self._latest[job.id]

    def add(self, outcome: Outcome) -> None:
        self._pending.append(outcome)
        self._wanted.set()

    def started(self, job: Job) -> None:
        """The task has started: its record says so with the next batch."""
        self._pending.append(Started(job))
        self._wanted.set()

    def close(self) -> None:
        """No more outcomes will come: next_batch() returns None once all are taken."""
        self._closing = True
        self._wanted.set()

    async def next_batch(self, max_n: int) -> list[Ack] | None:
        """Whatever piled up, at most ``max_n``; waits while there is nothing to send."""
        while not self._pending:
            # Checked before every wait: the wake-up for closing may have been consumed
            # while the last batch was being sent.
            if self._closing:
                return None
            await self._wanted.wait()
            self._wanted.clear()
        batch, self._pending = self._pending[:max_n], self._pending[max_n:]
        return batch

    def release(self, batch: list[Ack]) -> None:
        """The outcomes are recorded: their leases are no longer held (a start's is)."""
        held, latest = self.held, self._latest
        for outcome in batch:
            if type(outcome) is Started:
                continue
            job = outcome.job
            held.pop(job.lease, None)
            if latest.get(job.id) is job:
                del latest[job.id]


def lost_leases(held: list[Job], lost_ids: Iterable[str]) -> list[Job]:
    """The held jobs that heartbeat.lua reported lost. It returns their ids in the order
    they were sent; an id held twice (claimed again) is matched to its older copy first,
    whose lease is the one that passed on."""
    lost = list(lost_ids)
    found: list[Job] = []
    i = 0
    for job in held:
        if i < len(lost) and job.id == lost[i]:
            found.append(job)
            i += 1
    return found
