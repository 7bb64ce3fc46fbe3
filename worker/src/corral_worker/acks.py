"""One queue's claimed tasks: the leases the worker holds, and the outcomes waiting to
be sent. A lease is let go only once its outcome is recorded. Leases, not task ids, are
the keys: the same task claimed again (its first lease ran out) is another lease.

Starts go the same way: a task's record turns from prefetched to running with a batch
the loop sends, before the task's outcome. Starts are sent together START_WAIT_S after
the first of them, leaving out tasks that have ended by then (their outcome is recorded
straight from prefetched): short tasks cost no more than a list append, and the start
of a long one shows within that time plus a round trip."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from corral_worker.broker import Ack, Job, Lease, Outcome, Started

START_WAIT_S = 0.05


class AckBuffer:
    def __init__(self) -> None:
        self.held: dict[Lease, Job] = {}  # claimed and not yet acknowledged
        self._latest: dict[str, Job] = {}  # the newest lease held on each task id
        self._pending: list[Ack] = []
        self._wanted = asyncio.Event()
        self._closing = False
        self._starts: list[Job] = []  # started, not yet said so
        self._start_wake: asyncio.TimerHandle | None = None
        self._starts_due = False

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
        self._starts.append(job)
        if self._start_wake is None:
            self._start_wake = asyncio.get_running_loop().call_later(
                START_WAIT_S, self._wake_for_starts)

    def _wake_for_starts(self) -> None:
        self._start_wake = None
        self._starts_due = True
        self._wanted.set()

    def _due_starts(self) -> list[Ack]:
        if not self._starts_due:
            return []
        self._starts_due = False
        jobs, self._starts = self._starts, []
        return [Started(job) for job in jobs if not job.settled]

    def close(self) -> None:
        """No more outcomes will come: next_batch() returns None once all are taken."""
        self._closing = True
        self._wanted.set()

    async def next_batch(self, max_n: int) -> list[Ack] | None:
        """Whatever piled up, at most ``max_n``; waits while there is nothing to send."""
        while True:
            starts = self._due_starts()
            if starts or self._pending:
                break
            # Checked before every wait: the wake-up for closing may have been consumed
            # while the last batch was being sent.
            if self._closing:
                return None
            await self._wanted.wait()
            self._wanted.clear()
        batch, self._pending = self._pending[:max_n], self._pending[max_n:]
        return starts + batch if starts else batch

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
