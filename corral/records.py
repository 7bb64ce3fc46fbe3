"""A task's stored record as people read it: ``corral show``, the dashboard's task page
and its ``/api/tasks/{id}``. Everything in it was written by producers and workers
(names, arguments, error messages, worker ids): turned into plain types here, escaped
by whoever renders it.

The attempt history is kept by the scripts (``log_attempt`` in ``_lua/prelude.lua``):
fields ``attempt:<seq>`` holding one JSON object per ended attempt, the latest
``ATTEMPTS_KEPT`` of them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, cast

from redis.asyncio import Redis

from corral.keys import DEFAULT_PREFIX, queue_keys
from corral.serialization import decode_error, decode_json
from corral.states import Status

# Arguments and results are shown up to this many characters; the JSON says so.
TRUNCATE_CHARS = 2_000
# Task record fields that are shown; the lease token and the raw payload are not.
TIME_FIELDS = ("enq_ms", "ready_ms", "started_ms", "finished_ms", "dead_ms")
_ATTEMPT_PREFIX = b"attempt:"


@dataclass(frozen=True, slots=True)
class Attempt:
    """One ended attempt: which worker ran it, when, and how it ended."""

    number: int
    worker: str
    started_ms: int
    finished_ms: int
    outcome: str  # succeeded, failed, dead, cancelled, retried, requeued, lease expired
    error_type: str
    error_message: str
    traceback: str


@dataclass(frozen=True, slots=True)
class TaskRecord:
    id: str
    queue: str
    name: str
    state: Status
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
    history: tuple[Attempt, ...] = ()  # oldest first

    def json(self) -> dict[str, Any]:
        value = asdict(self)
        value["state"] = str(self.state)
        value["history"] = [asdict(a) for a in self.history]
        return value


def truncate(text: str, limit: int = TRUNCATE_CHARS) -> tuple[str, bool]:
    if len(text) <= limit:
        return text, False
    return text[:limit] + "…", True


def _text(value: bytes | None) -> str:
    return (value or b"").decode(errors="replace")


def _int(value: object) -> int:
    try:
        return int(float(cast(Any, value) or 0))
    except (TypeError, ValueError):
        return 0


def _json_text(value: bytes | None) -> str:
    """Stored JSON shown as compact JSON; anything that does not parse, as text."""
    if not value:
        return ""
    try:
        return json.dumps(decode_json(value), ensure_ascii=False)
    except ValueError:
        return _text(value)


def attempt_of(data: bytes) -> Attempt | None:
    """One history entry; None when it is damaged (it is only shown, never acted on)."""
    try:
        entry = decode_json(data)
    except ValueError:
        return None
    if not isinstance(entry, dict):
        return None
    error_data = entry.get("error")
    error = decode_error(error_data.encode() if isinstance(error_data, str) else None)
    return Attempt(
        number=_int(entry.get("n")),
        worker=str(entry.get("worker", "")),
        started_ms=_int(entry.get("started_ms")),
        finished_ms=_int(entry.get("finished_ms")),
        outcome=str(entry.get("outcome", "")),
        error_type=error["type"],
        error_message=error["message"],
        traceback=error["traceback"],
    )


def history_of(fields: Mapping[bytes, bytes]) -> tuple[Attempt, ...]:
    """The attempts in a record's fields, oldest first. The attempt that succeeded has
    no entry of its own (finish.lua keeps small records small): it is read from the
    record's times, attempt count and ``worker``."""
    entries = sorted(
        (_int(name[len(_ATTEMPT_PREFIX) :].decode(errors="replace")), value)
        for name, value in fields.items()
        if name.startswith(_ATTEMPT_PREFIX)
    )
    history = tuple(a for _, value in entries if (a := attempt_of(value)) is not None)
    if fields.get(b"state") == b"succeeded" and b"worker" in fields:
        history += (Attempt(
            number=_int(fields.get(b"attempts")), worker=_text(fields.get(b"worker")),
            started_ms=_int(fields.get(b"started_ms")),
            finished_ms=_int(fields.get(b"finished_ms")), outcome="succeeded",
            error_type="", error_message="", traceback=""),)
    return history


def task_record(task_id: str, queue: str, fields: Mapping[bytes, bytes]) -> TaskRecord:
    get = fields.get
    args, args_cut = truncate(_json_text(get(b"payload")))
    result, result_cut = truncate(_json_text(get(b"result")))
    error = decode_error(get(b"error"))
    reason = _text(get(b"reason"))
    if not error["type"] and reason:
        error = {"type": "DeadLetter", "message": reason, "traceback": ""}
    return TaskRecord(
        id=task_id,
        queue=queue,
        name=_text(get(b"name")),
        state=Status.of(get(b"state")),
        priority=_int(get(b"prio")),
        attempts=_int(get(b"attempts")),
        key=_text(get(b"key")),
        args=args,
        args_truncated=args_cut,
        result=result,
        result_truncated=result_cut,
        error_type=error["type"],
        error_message=error["message"],
        traceback=error["traceback"],
        times_ms={name: _int(get(name.encode())) for name in TIME_FIELDS if get(name.encode())},
        history=history_of(fields),
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


def duration_text(ms: int) -> str:
    if ms < 1000:
        return f"{ms} ms"
    if ms < 120_000:
        return f"{ms / 1000:.1f} s"
    return f"{ms / 60_000:.1f} min"


def timings_text(times_ms: Mapping[str, int]) -> str:
    """How long the last attempt waited and ran, from the stored times."""
    parts = []
    ready_ms, started_ms = times_ms.get("ready_ms"), times_ms.get("started_ms")
    finished_ms = times_ms.get("finished_ms")
    if ready_ms and started_ms and started_ms >= ready_ms:
        parts.append(f"waited {duration_text(started_ms - ready_ms)}")
    if started_ms and finished_ms and finished_ms >= started_ms:
        parts.append(f"ran {duration_text(finished_ms - started_ms)}")
    return ", ".join(parts)


def ran_text(attempt: Attempt) -> str:
    """How long one attempt ran, or '' when its times are missing."""
    if attempt.started_ms and attempt.finished_ms >= attempt.started_ms:
        return duration_text(attempt.finished_ms - attempt.started_ms)
    return ""
