"""What the dashboard shows, read through the core's functions, and its JSON form.

Every value that comes from Redis is data written by producers and workers (task names,
arguments, error messages, worker ids): it is turned into plain types here and escaped
where it is rendered, never trusted as markup.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from corral.admin import DeadTask
from corral.depths import QueueDepth, WorkerInfo
from corral.records import TRUNCATE_CHARS, TaskRecord, find_task, task_record, truncate

__all__ = ["TRUNCATE_CHARS", "TaskRecord", "WorkerRow", "dead_json", "find_task",
           "task_record", "truncate", "workers_of"]


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
    loop_lag_ms: float = 0.0

    def json(self) -> dict[str, Any]:
        return {"id": self.worker_id, "queues": list(self.queues), "in_flight": self.in_flight,
                "running": self.running, "concurrency": self.concurrency,
                "started_ms": self.started_ms, "heartbeat_ms": self.heartbeat_ms,
                "loop_lag_ms": self.loop_lag_ms}


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
            latest.heartbeat_ms, max(i.loop_lag_ms for i in infos),
        ))
    return rows


def dead_json(task: DeadTask) -> dict[str, Any]:
    return {"id": task.id, "name": task.name, "attempts": task.attempts,
            "error_type": task.error_type, "message": task.message,
            "traceback": task.traceback, "dead_ms": task.dead_ms}
