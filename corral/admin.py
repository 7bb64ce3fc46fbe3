"""Operations on stored queues for people: the dead-letter queue and task records.
Each Redis call does a bounded amount of work (``DLQ_CHUNK`` tasks, about a
millisecond of Redis time), so an operation on a huge dead-letter queue never blocks
Redis for other clients; the loops are here, in the client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

from redis.asyncio import Redis

from corral.keys import DEFAULT_PREFIX, QueueKeys, queue_keys, queue_scan_pattern
from corral.scripts import Scripts
from corral.serialization import decode_error

# Tasks per script call: a requeue costs a handful of commands per task.
DLQ_CHUNK = 100
# Records read per pipelined round trip when listing.
_LIST_CHUNK = 1000


@dataclass(frozen=True, slots=True)
class DeadTask:
    id: str
    name: str
    attempts: int
    error_type: str
    message: str
    traceback: str
    dead_ms: int


@dataclass(frozen=True, slots=True)
class DlqChange:
    """What one chunk (or a whole operation) did."""

    changed: int  # requeued or purged
    kept: int  # left dead: nothing to run (no payload)
    missing: int  # not in the dead-letter queue (unknown, expired or gone already)


async def dead_tasks(redis: Redis, queue: str, limit: int = 100, *,
                     prefix: str = DEFAULT_PREFIX) -> list[DeadTask]:
    """Up to ``limit`` dead tasks of ``queue`` under key ``prefix``, the first to expire
    first."""
    out: list[DeadTask] = []
    for start in range(0, limit, _LIST_CHUNK):
        chunk = await _dead_chunk(redis, queue_keys(queue, prefix), start,
                                  min(limit, start + _LIST_CHUNK) - 1)
        out += chunk
        if len(chunk) < _LIST_CHUNK:
            break
    return out


async def _dead_chunk(redis: Redis, keys: QueueKeys, start: int, stop: int) -> list[DeadTask]:
    raw_ids = cast(list[bytes], await redis.zrange(keys.dead, start, stop))
    ids = [i.decode() for i in raw_ids]
    if not ids:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for task_id in ids:
            pipe.hmget(keys.task(task_id), ["name", "attempts", "error", "reason", "finished_ms",
                                            "dead_ms"])
        rows = await pipe.execute()
    out = []
    for task_id, (name, attempts, error, reason, finished_ms, dead_ms) in zip(ids, rows,
                                                                                strict=True):
        err = decode_error(error)
        if not err["type"] and reason:
            err = {"type": "DeadLetter", "message": reason.decode(), "traceback": ""}
        out.append(
            DeadTask(
                id=task_id,
                name=(name or b"").decode(errors="replace"),
                attempts=_int(attempts),
                error_type=err["type"],
                message=err["message"],
                traceback=err["traceback"],
                dead_ms=_int(finished_ms or dead_ms),
            )
        )
    return out


async def dlq_change(
    redis: Redis, queue: str, op: Literal["requeue", "purge"], ids: Sequence[str] = (),
    *, prefix: str = DEFAULT_PREFIX,
) -> int:
    """Requeue or purge ``ids`` (none: every dead task); the number changed."""
    total = 0
    async for chunk in dlq_chunks(redis, queue, op, ids, prefix=prefix):
        total += chunk.changed
    return total


async def dlq_chunks(
    redis: Redis,
    queue: str,
    op: Literal["requeue", "purge"],
    ids: Sequence[str] = (),
    scripts: Scripts | None = None,
    *,
    prefix: str = DEFAULT_PREFIX,
) -> AsyncIterator[DlqChange]:
    """Requeue or purge ``ids`` (none: every task dead when it starts), one bounded
    script call per chunk, yielding what each did."""
    keys = queue_keys(queue, prefix)
    scripts = scripts or Scripts.register(redis)
    if ids:
        for start in range(0, len(ids), DLQ_CHUNK):
            chunk = list(ids[start : start + DLQ_CHUNK])
            reply = await scripts.dlq(keys, [keys.task(i) for i in chunk], [op, "ids", *chunk])
            yield _change(reply)
        return
    until: bytes | str = ""
    offset = 0
    while True:
        reply = await scripts.dlq(keys, (), [op, "all", until, offset, DLQ_CHUNK])
        change, until = _change(reply), reply[3]
        if not change.changed + change.kept + change.missing:
            return
        offset += change.kept
        yield change


def _change(reply: list[Any]) -> DlqChange:
    return DlqChange(int(reply[0]), int(reply[1]), int(reply[2]))


async def known_queues(redis: Redis, *, prefix: str = DEFAULT_PREFIX) -> list[str]:
    """Queues that have any key under ``prefix`` in this Redis (found by SCAN, for
    inspect)."""
    names: set[str] = set()
    async for key in redis.scan_iter(match=queue_scan_pattern(prefix), count=1000):
        text = key.decode(errors="replace")
        if "{" in text and "}" in text:
            names.add(text[text.index("{") + 1 : text.index("}")])
    return sorted(names)


def _int(value: bytes | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0
