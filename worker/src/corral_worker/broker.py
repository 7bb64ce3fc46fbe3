"""The worker's Redis I/O: claim, finish, heartbeat and the wake/cancel channels.
Each call is one atomic Lua script on one queue's hash slot, and has a deadline: a
connection that stops answering without closing (a half-open peer) fails the call
instead of hanging it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from corral.keys import QueueKeys
from corral.retention import DEFAULT_DEAD_TTL_S, DEFAULT_MAX_DEAD
from corral.scripts import Scripts
from corral_worker.outcome import Finish, Stop


class Job:
    """A claimed task as the worker holds it."""

    __slots__ = (
        "attempts",
        "cancel_reason",
        "deadline",
        "id",
        "lease",
        "name",
        "payload",
        "priority",
        "queue",
        "ready_ms",
        "settled",
        "started_at",
        "task",
        "token",
    )

    def __init__(
        self,
        queue: str,
        task_id: str,
        name: str,
        payload: bytes,
        priority: int,
        ready_ms: int,
        attempts: int,
        token: str,
    ) -> None:
        self.queue = queue
        self.id = task_id
        self.name = name
        self.payload = payload
        self.priority = priority
        self.ready_ms = ready_ms
        self.attempts = attempts
        self.token = token
        # One claim of the task: the same id claimed again is another lease.
        self.lease: Lease = (task_id, token)
        self.task: Any = None  # the asyncio.Task running it, once started
        self.started_at = 0.0  # time.monotonic() at start
        self.deadline = 0.0  # time.monotonic() past which it times out; 0 = none
        self.cancel_reason: Stop | None = None  # why the worker cancelled it
        self.settled = False  # its outcome is decided (and no later one counts)


Lease = tuple[str, str]  # (task id, lease token)


@dataclass(frozen=True, slots=True)
class Claimed:
    jobs: list[Job]
    next_due_ms: int  # the earliest scheduled task's time, -1 when there is none
    now_ms: int  # Redis's clock when it answered


@dataclass(frozen=True, slots=True)
class Upkeep:
    backlog: int
    requeued: int
    cancelled: list[str]
    lost: list[str]


class Outcome:
    """One finished attempt, to be recorded by finish.lua."""

    __slots__ = ("data", "delay_ms", "finish", "give_back", "job", "ttl_ms")

    def __init__(
        self,
        job: Job,
        finish: Finish,
        data: bytes = b"",  # the encoded result (succeeded) or error (the others)
        # succeeded, failed, cancelled: how long the record is kept (0: not at all);
        # dead: how long it stays in the dead-letter queue (0: the default)
        ttl_ms: int = 0,
        delay_ms: int = 0,  # retry: how long until the next attempt
        give_back: bool = False,  # requeue: the attempt is not counted against retries
    ) -> None:
        self.job = job
        self.finish = finish
        self.data = data
        self.ttl_ms = ttl_ms
        self.delay_ms = delay_ms
        self.give_back = give_back

    def wire_number(self) -> int:
        """finish.lua's one number field, whose meaning depends on the outcome."""
        finish = self.finish
        if finish is Finish.RETRY:
            return self.delay_ms
        if finish is Finish.REQUEUE:
            return 1 if self.give_back else 0
        return self.ttl_ms


class Started:
    """A claimed task has started: finish.lua turns its record from prefetched to
    running. Sent with the outcomes (no round trip of its own); its lease stays held."""

    __slots__ = ("job",)

    def __init__(self, job: Job) -> None:
        self.job = job

    def age_ms(self) -> int:
        """How long ago it started (0 for a plain function still waiting for a thread)."""
        started_at = self.job.started_at
        return int((time.monotonic() - started_at) * 1000) if started_at else 0


STARTED_CODE = "b"  # finish.lua's code for a start
Ack = Outcome | Started  # what the ack loop sends, in the order it happened


class Broker:
    def __init__(
        self,
        redis: Redis,
        scripts: Scripts,
        holder: str,
        timeout_s: float = 5.0,
        *,
        dead_ttl_s: float = DEFAULT_DEAD_TTL_S,
        max_dead: int = DEFAULT_MAX_DEAD,
    ) -> None:
        self.redis = redis
        self.scripts = scripts
        # Lease tokens are "<holder>:<attempt>", unique to this process and claim.
        self.holder = holder
        self.timeout_s = timeout_s  # for each call; past it the call raises TimeoutError
        # For what the claim script dead-letters itself (ids with no usable record).
        self.dead_ttl_ms = int(dead_ttl_s * 1000)
        self.max_dead = max_dead

    async def claim(self, keys: QueueKeys, count: int, lease_ms: int) -> Claimed:
        async with asyncio.timeout(self.timeout_s):
            reply = await self.scripts.claim(
                keys, (), [count, lease_ms, self.holder, self.dead_ttl_ms, self.max_dead]
            )
        holder, queue = self.holder, keys.queue
        jobs = []
        for i in range(2, len(reply), 6):
            attempts = int(reply[i + 5])
            jobs.append(
                Job(
                    queue,
                    reply[i].decode(),
                    reply[i + 1].decode(errors="replace"),
                    reply[i + 2],
                    int(reply[i + 3]),
                    int(reply[i + 4]),
                    attempts,
                    f"{holder}:{attempts}",
                )
            )
        return Claimed(jobs, int(reply[0]), int(reply[1]))

    async def finish(self, keys: QueueKeys, outcomes: Sequence[Ack]) -> list[str]:
        """Record outcomes (and starts); returns the ids whose lease had passed to another
        worker."""
        args: list[Any] = [self.max_dead]
        records = []
        for outcome in outcomes:
            job = outcome.job
            if type(outcome) is Started:
                args += (job.id, job.token, STARTED_CODE, b"", outcome.age_ms())
            else:
                assert type(outcome) is Outcome
                args += (job.id, job.token, outcome.finish.code, outcome.data,
                         outcome.wire_number())
            records.append(keys.task(job.id))
        async with asyncio.timeout(self.timeout_s):
            stale = await self.scripts.finish(keys, records, args)
        return [task_id.decode() for task_id in stale]

    async def heartbeat(
        self,
        keys: QueueKeys,
        worker_id: str,
        held: Sequence[Job],
        registry: dict[str, str | int],
        lease_ms: int,
        registry_ttl_ms: int,
        cancelled_ttl_ms: int,
    ) -> Upkeep:
        args: list[Any] = [worker_id, lease_ms, registry_ttl_ms, cancelled_ttl_ms, len(registry)]
        for field, value in registry.items():
            args += (field, value)
        for job in held:
            args += (job.id, job.token)
        records = [keys.worker(worker_id), *(keys.task(job.id) for job in held)]
        async with asyncio.timeout(self.timeout_s):
            backlog, requeued, cancelled, lost = await self.scripts.heartbeat(
                keys, records, args)
        return Upkeep(
            int(backlog),
            int(requeued),
            [i.decode() for i in cancelled],
            [i.decode() for i in lost],
        )

    async def deregister(self, keys: QueueKeys, worker_id: str) -> None:
        async with asyncio.timeout(self.timeout_s), self.redis.pipeline(transaction=False) as pipe:
            pipe.zrem(keys.workers, worker_id)
            pipe.delete(keys.worker(worker_id))
            await pipe.execute()


def now_ms() -> int:
    return time.time_ns() // 1_000_000
