"""What the dashboard shows, read through the core's functions, and its JSON form.

Every value that comes from Redis is data written by producers and workers (task names,
arguments, error messages, worker ids): it is turned into plain types here and escaped
where it is rendered, never trusted as markup.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, cast

from redis.asyncio import Redis

from corral.admin import DeadTask
from corral.depths import QueueDepth, WorkerInfo
from corral.keys import DEFAULT_PREFIX, queue_keys
from corral.serialization import decode_error, decode_json

# Arguments and results are shown up to this many characters; the JSON API says so.
TRUNCATE_CHARS = 2_000
# Task record fields that are shown; the lease token and the raw payload are not.
_TIME_FIELDS = ("enq_ms", "ready_ms", "started_ms", "finished_ms", "dead_ms")


@dataclass(frozen=True, slots=True)
class WorkerRow:
    """One worker process. A worker registers in every queue it serves; this joins
    those entries."""

    worker_id: str
    queues: tuple[str, ...]
    in_flight: int
    running: int
    concurrency: int
    started_ms: int
    heartbeat_ms: int

    def json(self) -> dict[str, Any]:
        return {"id": self.worker_id, "queues": list(self.queues), "in_flight": self.in_flight,
                "running": self.running, "concurrency": self.concurrency,
                "started_ms": self.started_ms, "heartbeat_ms": self.heartbeat_ms}


def workers_of(depths: Iterable[QueueDepth]) -> list[WorkerRow]:
    entries: dict[str, list[WorkerInfo]] = {}
    for depth in depths:
        for info in depth.workers:
            entries.setdefault(info.worker_id, []).append(info)
    rows = []
    for worker_id, infos in sorted(entries.items()):
        # Each entry counts the tasks of its own queue; concurrency is the worker's.
        latest = max(infos, key=lambda i: i.heartbeat_ms)
        queues = sorted({q for i in infos for q in i.queues})
        rows.append(WorkerRow(
            worker_id, tuple(queues), sum(i.in_flight for i in infos),
            sum(i.running for i in infos), latest.concurrency, latest.started_ms,
            latest.heartbeat_ms,
        ))
    return rows


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """A task's stored record, as people read it."""

    id: str
    queue: str
    name: str
    state: str
    priority: int
    attempts: int
    key: str
    args: str
    args_truncated: bool
    result: str
    result_truncated: bool
    error_type: str
    error_message: str
    traceback: str
    times_ms: dict[str, int] = field(default_factory=dict)

    def json(self) -> dict[str, Any]:
        return asdict(self)


def truncate(text: str, limit: int = TRUNCATE_CHARS) -> tuple[str, bool]:
    if len(text) <= limit:
        return text, False
    return text[:limit] + "…", True


def _text(value: bytes | None) -> str:
    return (value or b"").decode(errors="replace")


def _int(value: bytes | None) -> int:
    try:
        return int(float(value or 0))
    except ValueError:
        return 0


def _json_text(value: bytes | None) -> str:
    """Stored JSON shown as compact JSON; anything that does not parse, as text."""
    if not value:
        return ""
    try:
        return json.dumps(decode_json(value), ensure_ascii=False)
    except ValueError:
        return _text(value)


def task_record(task_id: str, queue: str, fields: dict[bytes, bytes]) -> TaskRecord:
    get = fields.get
    args, args_cut = truncate(_json_text(get(b"payload")))
    result, result_cut = truncate(_json_text(get(b"result")))
    error = decode_error(get(b"error"))
    reason = _text(get(b"reason"))
    if not error["type"] and reason:
        error = {"type": "DeadLetter", "message": reason, "traceback": ""}
    return TaskRecord(
        id=task_id, queue=queue, name=_text(get(b"name")), state=_text(get(b"state")),
        priority=_int(get(b"prio")), attempts=_int(get(b"attempts")), key=_text(get(b"key")),
        args=args, args_truncated=args_cut, result=result, result_truncated=result_cut,
        error_type=error["type"], error_message=error["message"],
        traceback=error["traceback"],
        times_ms={name: _int(get(name.encode())) for name in _TIME_FIELDS
                  if get(name.encode())},
    )


async def find_task(redis: Redis, task_id: str, queues: Sequence[str],
                    prefix: str = DEFAULT_PREFIX) -> TaskRecord | None:
    """The record of ``task_id`` in the first of ``queues`` (under ``prefix``) that
    holds it."""
    if not task_id or len(task_id) > 200:
        return None
    async with redis.pipeline(transaction=False) as pipe:
        for queue in queues:
            pipe.hgetall(queue_keys(queue, prefix).task(task_id))
        rows = cast(list[dict[bytes, bytes]], await pipe.execute())
    for queue, fields in zip(queues, rows, strict=True):
        if fields:
            return task_record(task_id, queue, fields)
    return None


def dead_json(task: DeadTask) -> dict[str, Any]:
    return {"id": task.id, "name": task.name, "attempts": task.attempts,
            "error_type": task.error_type, "message": task.message,
            "traceback": task.traceback, "dead_ms": task.dead_ms}
