"""``corral show ID``: everything stored about one task, its attempts included; what an
operator paged at night wants first (which worker ran it, how each attempt ended, the
traceback)."""

from __future__ import annotations

import argparse
import json
import time

from corral.cli.args import CliError, prefix_of, url_of
from corral.client import task_queue
from corral.connection import connect
from corral.records import Attempt, TaskRecord, find_task, ran_text, timings_text

_TIME_LABELS = {
    "enq_ms": "enqueued",
    "ready_ms": "ready from",
    "started_ms": "started",
    "finished_ms": "finished",
    "dead_ms": "dead since",
}


SHOW_HELP = (
    "everything about one task: its record, each attempt (worker, start, end, "
    "error, traceback) and its result"
)


async def show(args: argparse.Namespace) -> int:
    queue = task_queue(args.id, args.queue)
    redis = connect(url_of(args))
    try:
        record = await find_task(redis, args.id, [queue], prefix_of(args))
    finally:
        await redis.aclose()
    if record is None:
        raise CliError(f"no task {args.id} in queue {queue!r} (unknown or expired)")
    print(json.dumps(record.json(), indent=2) if args.json else format_record(record))
    return 0


def when(ms: int) -> str:
    if not ms:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


def format_record(r: TaskRecord) -> str:
    rows = [
        ("id", r.id),
        ("name", r.name),
        ("queue", r.queue),
        ("status", str(r.state)),
        ("priority", str(r.priority)),
        ("attempts", str(r.attempts)),
    ]
    if r.key:
        rows.append(("key", r.key))
    rows += [(_TIME_LABELS.get(name, name), when(ms)) for name, ms in r.times_ms.items()]
    timings = timings_text(r.times_ms)
    if timings:
        rows.append(("timings", timings))
    if r.args:
        rows.append(("args", r.args + (" (truncated)" if r.args_truncated else "")))
    else:  # dropped with the payload when it finished (retention)
        rows.append(("args", "- (not kept once a task has finished)"))
    if r.result:
        rows.append(("result", r.result + (" (truncated)" if r.result_truncated else "")))
    if r.error_type or r.error_message:
        rows.append(("error", f"{r.error_type}: {r.error_message}"))
    lines = [f"{name + ':':<12} {value}" for name, value in rows]
    if r.history:
        lines += ["", f"history (last {len(r.history)} attempts, oldest first):"]
        for attempt in r.history:
            lines += format_attempt(attempt)
    elif r.traceback:  # no history (a record from before it was kept): the last error
        lines += ["", r.traceback.rstrip()]
    return "\n".join(lines)


def format_attempt(a: Attempt) -> list[str]:
    ran = ran_text(a)
    lines = [
        f"  attempt {a.number}: {a.outcome} on {a.worker or '?'}, started "
        f"{when(a.started_ms)}, ended {when(a.finished_ms)}" + (f" (ran {ran})" if ran else "")
    ]
    if a.error_type or a.error_message:
        lines.append(f"    {a.error_type}: {a.error_message}")
    if a.traceback:
        lines += [f"    | {line}" for line in a.traceback.rstrip().splitlines()]
    return lines
