"""The core's subcommands: what a producer or an operator at a terminal needs. Each
command has a small function that adds its parser and one that runs it."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Coroutine
from typing import Any

from corral.admin import known_queues
from corral.cli.acl import add_acl
from corral.cli.args import (
    CliError,
    Subcommands,
    app_of,
    int_range,
    json_arg,
    prefix_of,
    queue_arg,
    seconds,
    url_of,
)
from corral.cli.dlq import add_dlq
from corral.cli.show import SHOW_HELP, show
from corral.cli.top import add_top, run_top
from corral.client import Client, task_queue
from corral.connection import connect
from corral.depths import QueueDepth, read_queue_depths
from corral.errors import TaskCancelled, TaskFailed
from corral.schedules import Registered, registered
from corral.states import FINAL_STATES, Status

QUEUE_OF_ID_HELP = ("the task's queue (default: the queue named in the id; ids made before "
                    "ids named their queue need it unless the queue is 'default')")


def register(subcommands: Subcommands) -> None:
    for add in (_add_enqueue, _add_status, _add_show, _add_cancel, _add_result, _add_inspect,
                add_top, add_dlq, add_acl):
        add(subcommands)


def _add_enqueue(subcommands: Subcommands) -> None:
    text = "enqueue one task and print its id"
    command = subcommands.add_parser("enqueue", help=text, description=text)
    command.add_argument("task", help="task name (checked against --app when given)")
    command.add_argument("--args", type=json_arg(list), default=[],
                         help="positional arguments as a JSON list (default [])")
    command.add_argument("--kwargs", type=json_arg(dict), default={},
                         help="keyword arguments as a JSON object (default {})")
    command.add_argument("--queue", type=queue_arg, default=None,
                         help="queue to put it on (default: the task's queue from --app, "
                              "else 'default')")
    command.add_argument("--priority", type=int_range(0, 9), default=0,
                         help="0-9, 9 runs first (default 0)")
    command.add_argument("--delay", type=seconds, default=0.0,
                         help="seconds before it may run (default 0)")
    command.add_argument("--key", default=None,
                         help="de-duplication key: while a task with this key is live, "
                              "its id is returned instead")
    command.add_argument("--wait", type=seconds, default=None,
                         help="wait up to this many seconds for the result and print it")
    command.set_defaults(run=enqueue)


def _one_task_parser(subcommands: Subcommands, name: str, text: str) -> argparse.ArgumentParser:
    """A command about one task: its id, and the queue when the id does not name it."""
    command = subcommands.add_parser(name, help=text, description=text)
    command.add_argument("id", help="task id, as enqueue printed it")
    command.add_argument("--queue", type=queue_arg, default=None, help=QUEUE_OF_ID_HELP)
    return command


def _add_status(subcommands: Subcommands) -> None:
    command = _one_task_parser(subcommands, "status",
                               "print a task's status (exit 1 when unknown)")
    command.set_defaults(run=status)


def _add_show(subcommands: Subcommands) -> None:
    command = _one_task_parser(subcommands, "show", SHOW_HELP)
    command.add_argument("--json", action="store_true", help="print JSON")
    command.set_defaults(run=show)


def _add_cancel(subcommands: Subcommands) -> None:
    command = _one_task_parser(subcommands, "cancel",
                               "cancel a queued, scheduled, prefetched or running task")
    command.set_defaults(run=cancel)


def _add_result(subcommands: Subcommands) -> None:
    command = _one_task_parser(subcommands, "result",
                               "wait for a task's result and print it as JSON")
    command.add_argument("--timeout", type=seconds, default=10.0,
                         help="seconds to wait for the task to finish (default 10)")
    command.set_defaults(run=result)


def _add_inspect(subcommands: Subcommands) -> None:
    text = ("queues, backlogs, live workers and periodic tasks, once (see `corral top` for "
            "a live view)")
    command = subcommands.add_parser("inspect", help=text, description=text)
    command.add_argument("--queue", type=queue_arg, action="append", dest="queues",
                         help="queue to show (repeatable; default: every queue found)")
    command.add_argument("--json", action="store_true", help="print JSON")
    command.add_argument("--watch", action="store_true",
                         help="refresh in place every 2 s instead: the same as corral top")
    command.set_defaults(run=inspect_command)


async def enqueue(args: argparse.Namespace) -> int:
    app = app_of(args)
    async with Client.from_url(url_of(args), app=app, prefix=prefix_of(args, app)) as client:
        handle = await client.enqueue(
            args.task, args.args, args.kwargs, queue=args.queue, priority=args.priority,
            delay=args.delay, key=args.key,
        )
        print(handle.id)
        if args.wait is not None:
            return await _print_result(client, handle.id, handle.queue, args.wait)
    return 0


async def status(args: argparse.Namespace) -> int:
    async with Client.from_url(url_of(args), prefix=prefix_of(args)) as client:
        state = await client.status(args.id, queue=args.queue)
    print(state)
    return 0 if state is not Status.UNKNOWN else 1


async def cancel(args: argparse.Namespace) -> int:
    queue = task_queue(args.id, args.queue)
    async with Client.from_url(url_of(args), prefix=prefix_of(args)) as client:
        if await client.cancel(args.id, queue=queue):
            print(f"cancelled {args.id}")
            return 0
        state = await client.status(args.id, queue=queue)
    if state is Status.UNKNOWN:
        raise CliError(f"no task {args.id} in queue {queue!r} (unknown or expired)")
    if state in FINAL_STATES:
        raise CliError(f"task {args.id} not cancelled: already {state}")
    raise CliError(f"task {args.id} not cancelled: it is {state}")


async def result(args: argparse.Namespace) -> int:
    async with Client.from_url(url_of(args), prefix=prefix_of(args)) as client:
        return await _print_result(client, args.id, args.queue, args.timeout)


async def _print_result(client: Client, task_id: str, queue: str | None,
                        timeout_s: float) -> int:
    try:
        value = await client.result(task_id, queue=queue, timeout=timeout_s)
    except TaskCancelled as exc:
        detail = f": {exc.message}" if exc.message else ""
        raise CliError(f"task {task_id} was cancelled{detail}") from None
    except TaskFailed as exc:
        hint = f" (traceback: corral dlq show {task_id})" if exc.state == "dead" else ""
        raise CliError(f"task {task_id} {exc.state}: {exc.type}: {exc.message}{hint}") from None
    except TimeoutError as exc:
        raise CliError(str(exc)) from None
    print(json.dumps(value))
    return 0


def inspect_command(args: argparse.Namespace) -> int | Coroutine[Any, Any, int]:
    if args.watch:
        args.interval = 2.0
        return run_top(args)
    return inspect(args)


async def inspect(args: argparse.Namespace) -> int:
    prefix = prefix_of(args)
    redis = connect(url_of(args))
    try:
        queues = args.queues or await known_queues(redis, prefix=prefix)
        depths = await read_queue_depths(redis, queues, prefix=prefix) if queues else {}
        schedules = {q: await registered(redis, q, prefix=prefix) for q in queues}
    finally:
        await redis.aclose()
    now_ms = time.time_ns() // 1_000_000
    if args.json:
        print(json.dumps({q: {**d.to_json(),
                              "schedules": [s.to_json(now_ms) for s in schedules[q]]}
                          for q, d in depths.items()}, indent=2))
    elif not depths:
        print("no queues found")
    else:
        print(format_depths(depths))
        print(format_schedules(schedules, now_ms))
    return 0


def format_schedules(schedules: dict[str, list[Registered]], now_ms: int) -> str:
    rows = [(queue, entry) for queue, entries in schedules.items() for entry in entries]
    lines = ["", f"{len(rows)} periodic tasks"]
    for queue, entry in rows:
        s = entry.schedule
        last = _utc(entry.last_ms) if entry.last_ms is not None else "never"
        lines.append(f"  {s.name:<30} queue={queue} task={s.task} {s.describe()} "
                     f"catch_up={s.catch_up.value} last={last} "
                     f"next={_utc(entry.next_ms(now_ms))}")
    return "\n".join(lines)


def _utc(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


def format_depths(depths: dict[str, QueueDepth]) -> str:
    now_ms = time.time() * 1000
    lines = [f"{'QUEUE':<20} {'READY':>8} {'SCHEDULED':>10} {'IN-FLIGHT':>10} {'DEAD':>8} "
             f"{'LIMITED':>8}  READY BY PRIORITY"]
    for name, d in depths.items():
        by_priority = " ".join(
            f"p{p}={n}" for p, n in reversed(list(enumerate(d.ready_by_priority))) if n
        ) or "-"
        lines.append(f"{name:<20} {d.ready:>8} {d.scheduled:>10} {d.in_flight:>10} "
                     f"{d.dead:>8} {d.limited:>8}  {by_priority}")
    workers = [(name, w) for name, d in depths.items() for w in d.workers]
    lines.append("")
    lines.append(f"{len(workers)} live worker entries")
    for name, w in workers:
        age_s = max(0.0, (now_ms - w.heartbeat_ms) / 1000) if w.heartbeat_ms else 0.0
        lines.append(f"  {w.worker_id:<30} queue={name} in_flight={w.in_flight} "
                     f"running={w.running} concurrency={w.concurrency} "
                     f"loop_lag={w.loop_lag_ms:.1f}ms heartbeat={age_s:.1f}s ago")
    return "\n".join(lines)
