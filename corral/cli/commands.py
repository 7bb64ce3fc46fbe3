"""The core's subcommands: what a producer or an operator at a terminal needs. Each
command has a small function that adds its parser and one that runs it."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from corral.admin import dead_tasks, dlq_change, known_queues
from corral.cli.args import Subcommands, int_range, json_arg, queue_arg, seconds
from corral.client import Client
from corral.connection import connect, default_url
from corral.depths import QueueDepth, read_queue_depths
from corral.errors import TaskFailed


def register(subcommands: Subcommands) -> None:
    for add in (_add_enqueue, _add_status, _add_cancel, _add_result, _add_inspect, _add_dlq):
        add(subcommands)


def url_of(args: argparse.Namespace) -> str:
    return getattr(args, "redis_url", None) or default_url()


def _add_enqueue(subcommands: Subcommands) -> None:
    command = subcommands.add_parser("enqueue", help="enqueue one task")
    command.add_argument("task", help="task name")
    command.add_argument("--args", type=json_arg(list), default=[], help="JSON list")
    command.add_argument("--kwargs", type=json_arg(dict), default={}, help="JSON object")
    command.add_argument("--queue", type=queue_arg, default="default")
    command.add_argument("--priority", type=int_range(0, 9), default=0, help="0-9, 9 first")
    command.add_argument("--delay", type=seconds, default=0.0, help="seconds before it may run")
    command.add_argument("--key", default=None, help="de-duplication key")
    command.add_argument("--wait", type=seconds, default=None,
                         help="wait up to this many seconds for the result and print it")
    command.set_defaults(run=enqueue)


def _add_status(subcommands: Subcommands) -> None:
    command = subcommands.add_parser("status", help="print a task's status")
    command.add_argument("id")
    command.add_argument("--queue", type=queue_arg, default="default")
    command.set_defaults(run=status)


def _add_cancel(subcommands: Subcommands) -> None:
    command = subcommands.add_parser("cancel", help="cancel a task")
    command.add_argument("id")
    command.add_argument("--queue", type=queue_arg, default="default")
    command.set_defaults(run=cancel)


def _add_result(subcommands: Subcommands) -> None:
    command = subcommands.add_parser("result", help="wait for a task's result and print it")
    command.add_argument("id")
    command.add_argument("--queue", type=queue_arg, default="default")
    command.add_argument("--timeout", type=seconds, default=10.0)
    command.set_defaults(run=result)


def _add_inspect(subcommands: Subcommands) -> None:
    command = subcommands.add_parser("inspect", help="queues, backlogs and live workers")
    command.add_argument("--queue", type=queue_arg, action="append", dest="queues",
                         help="queue to show (repeatable; default: every queue found)")
    command.add_argument("--json", action="store_true", help="print JSON")
    command.set_defaults(run=inspect)


def _add_dlq(subcommands: Subcommands) -> None:
    command = subcommands.add_parser("dlq", help="the dead-letter queue")
    command.add_argument("action", choices=("list", "requeue", "purge"))
    command.add_argument("ids", nargs="*", help="task ids (default: all)")
    command.add_argument("--all", action="store_true", dest="all_ids",
                         help="every dead task (worked through in small chunks)")
    command.add_argument("--queue", type=queue_arg, default="default")
    command.add_argument("--limit", type=int_range(1, 100_000), default=100)
    command.set_defaults(run=dlq)



async def enqueue(args: argparse.Namespace) -> int:
    async with Client.from_url(url_of(args)) as client:
        handle = await client.enqueue(
            args.task, args.args, args.kwargs, queue=args.queue, priority=args.priority,
            delay=args.delay, key=args.key,
        )
        print(handle.id)
        if args.wait is not None:
            return await _print_result(client, handle.id, args.queue, args.wait)
    return 0


async def status(args: argparse.Namespace) -> int:
    async with Client.from_url(url_of(args)) as client:
        state = await client.status(args.id, queue=args.queue)
    print(state)
    return 0 if state != "unknown" else 1


async def cancel(args: argparse.Namespace) -> int:
    async with Client.from_url(url_of(args)) as client:
        cancelled = await client.cancel(args.id, queue=args.queue)
    print("cancelled" if cancelled else "not cancelled (unknown or already finished)")
    return 0 if cancelled else 1


async def result(args: argparse.Namespace) -> int:
    async with Client.from_url(url_of(args)) as client:
        return await _print_result(client, args.id, args.queue, args.timeout)


async def _print_result(client: Client, task_id: str, queue: str, timeout_s: float) -> int:
    try:
        value = await client.result(task_id, queue=queue, timeout=timeout_s)
    except TaskFailed as exc:
        print(f"{exc.state}: {exc.type}: {exc.message}", file=sys.stderr)
        return 1
    except TimeoutError as exc:
        print(f"corral: error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(value))
    return 0


async def inspect(args: argparse.Namespace) -> int:
    redis = connect(url_of(args))
    try:
        queues = args.queues or await known_queues(redis)
        depths = await read_queue_depths(redis, queues) if queues else {}
    finally:
        await redis.aclose()
    if args.json:
        print(json.dumps({q: _depth_json(d) for q, d in depths.items()}, indent=2))
    else:
        print(format_depths(depths) if depths else "no queues found")
    return 0


def _depth_json(depth: QueueDepth) -> dict[str, Any]:
    return {
        "ready_by_priority": dict(enumerate(depth.ready_by_priority)),
        "ready": depth.ready,
        "scheduled": depth.scheduled,
        "scheduled_due": depth.scheduled_due,
        "backlog": depth.backlog,
        "in_flight": depth.in_flight,
        "dead": depth.dead,
        "workers": [
            {"id": w.worker_id, "in_flight": w.in_flight, "running": w.running,
             "concurrency": w.concurrency, "queues": list(w.queues)}
            for w in depth.workers
        ],
    }


def format_depths(depths: dict[str, QueueDepth]) -> str:
    now_ms = time.time() * 1000
    lines = [f"{'QUEUE':<20} {'READY':>8} {'SCHEDULED':>10} {'IN-FLIGHT':>10} {'DEAD':>8}  "
             "READY BY PRIORITY"]
    for name, d in depths.items():
        by_priority = " ".join(
            f"p{p}={n}" for p, n in reversed(list(enumerate(d.ready_by_priority))) if n
        ) or "-"
        lines.append(f"{name:<20} {d.ready:>8} {d.scheduled:>10} {d.in_flight:>10} "
                     f"{d.dead:>8}  {by_priority}")
    workers = [(name, w) for name, d in depths.items() for w in d.workers]
    lines.append("")
    lines.append(f"{len(workers)} live worker entries")
    for name, w in workers:
        age_s = max(0.0, (now_ms - w.heartbeat_ms) / 1000) if w.heartbeat_ms else 0.0
        lines.append(f"  {w.worker_id:<30} queue={name} in_flight={w.in_flight} "
                     f"running={w.running} concurrency={w.concurrency} "
                     f"heartbeat={age_s:.1f}s ago")
    return "\n".join(lines)


async def dlq(args: argparse.Namespace) -> int:
    redis = connect(url_of(args))
    try:
        if args.action == "list":
            for task in await dead_tasks(redis, args.queue, args.limit):
                when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(task.dead_ms / 1000))
                # Names and messages come from whatever was written to Redis: one line each,
                # with no control characters reaching the terminal.
                print(_one_line(f"{task.id}  {task.name or '-'}  attempts={task.attempts}  "
                                f"{when}Z  {task.error_type}: {task.message}"))
            return 0
        if args.all_ids and args.ids:
            print("corral dlq: error: give task ids or --all, not both", file=sys.stderr)
            return 2
        count = await dlq_change(redis, args.queue, args.action, args.ids)
        print(f"{args.action}d {count} tasks")
        return 0
    finally:
        await redis.aclose()


def _one_line(text: str) -> str:
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


