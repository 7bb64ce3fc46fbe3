"""The ack/lease buffer: leases, not task ids, are the keys (pure, no Redis)."""

from __future__ import annotations

from corral_worker.acks import AckBuffer, lost_leases
from corral_worker.broker import Job, Outcome, Started
from corral_worker.outcome import Finish


def _job(task_id: str, attempt: int) -> Job:
    return Job("default", task_id, "t", b"", 0, 0, attempt, f"holder:{attempt}")


async def test_a_task_claimed_again_is_a_second_lease() -> None:
    acks = AckBuffer()
    first, second = _job("a", 1), _job("a", 2)
    assert acks.hold(first) is None
    assert acks.hold(second) is first  # the caller stops the first copy
    acks.add(Outcome(first, Finish.REQUEUE))
    batch = await acks.next_batch(10)
    assert batch is not None
    acks.release(batch)  # the first copy's outcome lets only its own lease go
    assert list(acks.held.values()) == [second]
    assert acks.hold(_job("a", 3)) is second


async def test_batches_are_bounded_and_close_ends_them() -> None:
    acks = AckBuffer()
    jobs = [_job(str(i), 1) for i in range(5)]
    for job in jobs:
        acks.hold(job)
        acks.add(Outcome(job, Finish.SUCCEEDED))
    first = await acks.next_batch(3)
    assert first is not None and [o.job for o in first] == jobs[:3] and len(acks) == 2
    acks.close()
    rest = await acks.next_batch(3)
    assert rest is not None and [o.job for o in rest] == jobs[3:]
    assert await acks.next_batch(3) is None
    acks.forget(jobs[0])
    assert jobs[0].lease not in acks.held


def test_lost_ids_are_matched_to_the_older_copy_first() -> None:
    old, other, new = _job("a", 1), _job("b", 1), _job("a", 2)
    assert lost_leases([old, other, new], ["a"]) == [old]
    assert lost_leases([old, other, new], ["a", "a"]) == [old, new]
    assert lost_leases([old, other, new], ["b"]) == [other]
    assert lost_leases([old, other, new], []) == []


async def test_a_start_goes_out_before_the_outcome_and_keeps_the_lease() -> None:
    acks = AckBuffer()
    job = _job("a", 1)
    acks.hold(job)
    acks.started(job)
    batch = await acks.next_batch(10)
    assert batch is not None and [type(item) for item in batch] == [Started]
    acks.release(batch)
    assert list(acks.held.values()) == [job]  # still running: the lease stays held
    acks.add(Outcome(job, Finish.SUCCEEDED))
    batch = await acks.next_batch(10)
    assert batch is not None
    acks.release(batch)
    assert acks.held == {}
