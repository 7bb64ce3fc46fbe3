"""Operations on stored queues for people: the dead-letter queue and task records."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, cast

from redis.asyncio import Redis

from corral.keys import queue_keys
from corral.scripts import Scripts
from corral.serialization import decode_error


@dataclass(frozen=True, slots=True)
class DeadTask:
    id: str
    name: str
    attempts: int
    error_type: str
    message: str
    traceback: str
    dead_ms: int


async def dead_tasks(redis: Redis, queue: str, limit: int = 100) -> list[DeadTask]:
    keys = queue_keys(queue)
    raw_ids = cast(list[bytes], await redis.lrange(keys.dead, 0, limit - 1))
    ids = [i.decode() for i in raw_ids]
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
    redis: Redis, queue: str, op: Literal["requeue", "purge"], ids: Sequence[str] = ()
) -> int:
    keys = queue_keys(queue)
    scripts = Scripts.register(redis)
    count = await scripts.dlq(
        keys=[*keys.ready, keys.dead], args=[keys.prefix, op, keys.wake_channel, *ids]
    )
    return int(count)


async def known_queues(redis: Redis) -> list[str]:
    """Queues that have any key in this Redis (found by SCAN, for inspect)."""
    names: set[str] = set()
    async for key in redis.scan_iter(match="corral:{*}:*", count=1000):
        text = key.decode(errors="replace")
        if "{" in text and "}" in text:
            names.add(text[text.index("{") + 1 : text.index("}")])
    return sorted(names)


def _int(value: bytes | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0
