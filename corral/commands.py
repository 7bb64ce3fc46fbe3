"""What each ``corral`` subcommand does (parsing lives in corral.cli)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from corral.admin import dead_tasks, dlq_change, known_queues
from corral.app import load_app
from corral.client import Client
from corral.connection import connect, default_url
from corral.depths import QueueDepth, read_queue_depths
from corral.errors import TaskFailed
from corral.logs import setup_logging


def _url(args: argparse.Namespace) -> str:
    return getattr(args, "redis_url", None) or default_url()


def worker(args: argparse.Namespace) -> int:
    from corral.worker.runtime import run_worker
    from corral.worker.settings import WorkerSettings

    setup_logging(args.log_format, args.log_level)
    # Like other app servers: the app module is looked up from the current directory too.
    sys.path.insert(0, os.getcwd())
    app = load_app(args.app)
    settings = WorkerSettings(
        redis_url=_url(args),
        queues=args.queues,
        concurrency=args.concurrency,
        batch_size=args.batch_size,
        lease_s=args.lease_seconds,
        grace_s=args.grace_seconds,
        metrics_host=args.metrics_host,
        metrics_port=None if args.metrics_port < 0 else args.metrics_port,
        debug_endpoint=not args.no_debug_endpoint,
        max_payload_bytes=app.max_payload_bytes,
        **({"worker_id": args.worker_id} if args.worker_id else {}),
    )
    run_worker(app, settings)
    return 0


async def enqueue(args: argparse.Namespace) -> int:
    async with Client.from_url(_url(args)) as client:
        handle = await client.enqueue(
            args.task, args.args, args.kwargs, queue=args.queue, priority=args.priority,
            delay=args.delay, key=args.key,
        )
        print(handle.id)
        if args.wait is not None:
            return await _print_result(client, handle.id, args.queue, args.wait)
    return 0


async def status(args: argparse.Namespace) -> int:
    async with Client.from_url(_url(args)) as client:
        state = await client.status(args.id, queue=args.queue)
    print(state)
    return 0 if state != "unknown" else 1


async def cancel(args: argparse.Namespace) -> int:
    async with Client.from_url(_url(args)) as client:
        cancelled = await client.cancel(args.id, queue=args.queue)
    print("cancelled" if cancelled else "not cancelled (unknown or already finished)")
    return 0 if cancelled else 1


async def result(args: argparse.Namespace) -> int:
    async with Client.from_url(_url(args)) as client:
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
    redis = connect(_url(args))
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
    redis = connect(_url(args))
    try:
        if args.action == "list":
            for task in await dead_tasks(redis, args.queue, args.limit):
                when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(task.dead_ms / 1000))
                # Names and messages come from whatever was written to Redis: one line each,
                # with no control characters reaching the terminal.
                print(_one_line(f"{task.id}  {task.name or '-'}  attempts={task.attempts}  "
                                f"{when}Z  {task.error_type}: {task.message}"))
            return 0
        count = await dlq_change(redis, args.queue, args.action, args.ids)
        print(f"{args.action}d {count} tasks")
        return 0
    finally:
        await redis.aclose()


def _one_line(text: str) -> str:
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def operator(args: argparse.Namespace) -> int:
    from corral.operator.main import run_operator

    setup_logging(args.log_format)
    run_operator(
        namespaces=args.namespaces, metrics_port=args.metrics_port, health_port=args.health_port,
        host=args.host, peering=args.peering, priority=args.priority,
        peering_lifetime_s=args.peering_lifetime,
    )
    return 0


def demo(args: argparse.Namespace) -> int:
    from corral.demo import run_demo

    return run_demo(getattr(args, "redis_url", None), args.tasks)
