"""The worker's Redis I/O: claim, finish, heartbeat and the wake/cancel channels.
Each call is one atomic Lua script on one queue's hash slot."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from corral.keys import QueueKeys
from corral.retention import DEFAULT_DEAD_TTL_S, DEFAULT_MAX_DEAD
from corral.scripts import Scripts


class Job:
    """A claimed task as the worker holds it."""

    __slots__ = (
        "attempts",
        "cancel_reason",
        "deadline",
        "id",
        "name",
        "payload",
        "priority",
        "queue",
        "ready_ms",
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
        self.task: Any = None  # the asyncio.Task running it, once started
        self.started_at = 0.0  # time.monotonic() at start
        self.deadline = 0.0  # time.monotonic() past which it times out; 0 = none
        self.cancel_reason: str | None = None


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


@dataclass(frozen=True, slots=True)
class Outcome:
    """One finished attempt, in the finish script's terms (see finish.lua)."""

    job: Job
    code: str  # s f d c r q
    # s f c: result TTL in ms (0: keep nothing); d: dead-letter TTL in ms (0: the
    # default); r: delay in ms; q: 1 to give the attempt back.
    data: bytes = b""
    number: int = 0


class Broker:
    def __init__(
        self,
        redis: Redis,
        scripts: Scripts,
        holder: str,
        *,
        dead_ttl_s: float = DEFAULT_DEAD_TTL_S,
        max_dead: int = DEFAULT_MAX_DEAD,
    ) -> None:
        self.redis = redis
        self.scripts = scripts
        # Lease tokens are "<holder>:<attempt>", unique to this process and claim.
        self.holder = holder
        # For what the claim script dead-letters itself (ids with no usable record).
        self.dead_ttl_ms = int(dead_ttl_s * 1000)
        self.max_dead = max_dead

    async def claim(self, keys: QueueKeys, count: int, lease_ms: int) -> Claimed:
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

    async def finish(self, keys: QueueKeys, outcomes: Sequence[Outcome]) -> list[str]:
        """Record outcomes; returns the ids whose lease had passed to another worker."""
        args: list[Any] = [self.max_dead]
        for outcome in outcomes:
            args += (outcome.job.id, outcome.job.token, outcome.code, outcome.data, outcome.number)
        records = [keys.task(outcome.job.id) for outcome in outcomes]
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
        backlog, requeued, cancelled, lost = await self.scripts.heartbeat(keys, records, args)
        return Upkeep(
            int(backlog),
            int(requeued),
            [i.decode() for i in cancelled],
            [i.decode() for i in lost],
        )

    async def deregister(self, keys: QueueKeys, worker_id: str) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrem(keys.workers, worker_id)
            pipe.delete(keys.worker(worker_id))
            await pipe.execute()


def now_ms() -> int:
    return time.time_ns() // 1_000_000
