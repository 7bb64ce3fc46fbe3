"""``corral dlq``: list, show, requeue and purge dead-lettered tasks."""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Literal, cast

from redis.asyncio import Redis

from corral.admin import DeadTask, dead_tasks, dlq_change
from corral.cli.args import (
    CliError,
    Parser,
    Subcommands,
    UsageError,
    int_range,
    prefix_of,
    queue_arg,
    url_of,
)
from corral.client import task_queue
from corral.connection import connect
from corral.keys import QueueKeys, queue_keys
from corral.serialization import decode_error

Change = Literal["requeue", "purge"]
_IDS_QUEUE_HELP = ("queue of the ids (default: the queue named in each id, else 'default'); "
                   "with --all, the queue to empty (default 'default')")


def add_dlq(subcommands: Subcommands) -> None:
    text = "the dead-letter queue: tasks that used up their retries or could not run"
    dlq = subcommands.add_parser("dlq", help=text, description=text)
    actions = dlq.add_subparsers(dest="action", required=True, metavar="ACTION",
                                 parser_class=Parser)
    _add_list(actions)
    _add_show(actions)
    _add_change(actions, "requeue", "put dead tasks back on their queue with a fresh "
                "attempt count (no ids: every dead task of --queue)")
    _add_change(actions, "purge", "delete dead tasks and their records (no ids: needs "
                "--all, or a yes at the prompt)")


def _add_list(actions: Subcommands) -> None:
    text = "list dead tasks, oldest first: id, task, attempts, when, error"
    command = actions.add_parser("list", help=text, description=text)
    command.add_argument("--queue", type=queue_arg, default="default",
                         help="queue whose dead tasks to list (default 'default')")
    command.add_argument("--limit", type=int_range(1, 100_000), default=100,
                         help="list at most this many (1-100000, default 100)")
    command.add_argument("--traceback", action="store_true",
                         help="print each task's traceback under it")
    command.set_defaults(run=list_dead)


def _add_show(actions: Subcommands) -> None:
    text = "everything stored about dead tasks, their tracebacks included"
    command = actions.add_parser("show", help=text, description=text)
    command.add_argument("ids", nargs="+", metavar="ID", help="task ids")
    command.add_argument("--queue", type=queue_arg, default=None,
                         help="queue of the ids (default: the queue named in each id, "
                              "else 'default')")
    command.set_defaults(run=show)


def _add_change(actions: Subcommands, op: Change, text: str) -> None:
    command = actions.add_parser(op, help=text, description=text)
    command.add_argument("ids", nargs="*", metavar="ID", help="task ids")
    command.add_argument("--queue", type=queue_arg, default=None, help=_IDS_QUEUE_HELP)
    command.add_argument("--all", action="store_true",
                         help=f"{op} every dead task of --queue")
    if op == "purge":
        command.add_argument("--yes", action="store_true",
                             help="do not ask before purging every dead task")
    command.set_defaults(run=change, op=op)


async def list_dead(args: argparse.Namespace) -> int:
    prefix = prefix_of(args)
    redis = connect(url_of(args))
    try:
        for task in await dead_tasks(redis, args.queue, args.limit, prefix=prefix):
            print(_summary(task))
            if args.traceback:
                print(_indented(task.traceback or "(no traceback stored)"))
    finally:
        await redis.aclose()
    return 0


async def show(args: argparse.Namespace) -> int:
    keys = functools.partial(queue_keys, prefix=prefix_of(args))
    redis = connect(url_of(args))
    try:
        found = [await _dead_task(redis, keys(task_queue(i, args.queue)), i) for i in args.ids]
    finally:
        await redis.aclose()
    missing = [i for i, (_, task) in zip(args.ids, found, strict=True) if task is None]
    print("\n\n".join(_details(queue, task) for queue, task in found if task is not None))
    if missing:
        raise CliError(f"not in the dead-letter queue (unknown or expired): {' '.join(missing)}")
    return 0


async def change(args: argparse.Namespace) -> int:
    op = cast(Change, args.op)
    if args.ids and args.all:
        raise UsageError("give task ids or --all, not both")
    if not args.ids:
        return await _change_all(args, op)
    prefix = prefix_of(args)
    redis = connect(url_of(args))
    try:
        by_queue: dict[str, list[str]] = defaultdict(list)
        for task_id in dict.fromkeys(args.ids):
            by_queue[task_queue(task_id, args.queue)].append(task_id)
        done, missing = 0, []
        for queue, ids in by_queue.items():
            dead = await _dead_ids(redis, queue_keys(queue, prefix), ids)
            missing += [i for i in ids if i not in dead]
            if dead:
                done += await dlq_change(redis, queue, op, dead, prefix=prefix)
    finally:
        await redis.aclose()
    print(f"{op}d {_tasks(done)}")
    if missing:
        raise CliError(f"not in the dead-letter queue (unknown or expired): {' '.join(missing)}")
    return 0


async def _change_all(args: argparse.Namespace, op: Change) -> int:
    queue = args.queue or "default"
    if op == "purge" and not (args.all or args.yes):
        _confirm_purge(queue)
    prefix = prefix_of(args)
    redis = connect(url_of(args))
    try:
        done = await dlq_change(redis, queue, op, prefix=prefix)
    finally:
        await redis.aclose()
    print(f"{op}d {_tasks(done)}")
    return 0


def _confirm_purge(queue: str) -> None:
    if not sys.stdin.isatty():
        raise UsageError(f"purging every dead task of queue {queue!r} needs --all "
                         "(or give the ids)")
    answer = input(f"purge every dead task of queue {queue!r}? [y/N] ")
    if answer.strip().lower() not in ("y", "yes"):
        raise CliError("nothing purged")


async def _dead_ids(redis: Redis, keys: QueueKeys, ids: Sequence[str]) -> list[str]:
    async with redis.pipeline(transaction=False) as pipe:
        for task_id in ids:
            pipe.hget(keys.task(task_id), "state")
        states = cast(list[bytes | None], await pipe.execute())
    return [i for i, state in zip(ids, states, strict=True) if state == b"dead"]


async def _dead_task(redis: Redis, keys: QueueKeys,
                     task_id: str) -> tuple[str, DeadTask | None]:
    fields = ["state", "name", "attempts", "error", "reason", "finished_ms", "dead_ms"]
    values = cast(list[bytes | None],
                  await redis.hmget(keys.task(task_id), fields))
    state, name, attempts, error, reason, finished_ms, dead_ms = values
    queue = keys.queue
    if state != b"dead":
        return queue, None
    err = decode_error(error)
    if not err["type"] and reason:
        err = {"type": "DeadLetter", "message": reason.decode(errors="replace"), "traceback": ""}
    return queue, DeadTask(
        id=task_id, name=(name or b"").decode(errors="replace"), attempts=_int(attempts),
        error_type=err["type"], message=err["message"], traceback=err["traceback"],
        dead_ms=_int(finished_ms or dead_ms),
    )


def _summary(task: DeadTask) -> str:
    # Names and messages come from whatever was written to Redis: one line each, with no
    # control characters reaching the terminal.
    return one_line(f"{task.id}  {task.name or '-'}  attempts={task.attempts}  "
                    f"{_when(task.dead_ms)}  {task.error_type}: {task.message}")


def _details(queue: str, task: DeadTask) -> str:
    return "\n".join([
        f"id: {task.id}",
        f"queue: {queue}",
        one_line(f"task: {task.name or '-'}"),
        f"attempts: {task.attempts}",
        f"dead since: {_when(task.dead_ms)}",
        one_line(f"error: {task.error_type}: {task.message}"),
        "traceback:",
        _indented(task.traceback or "(no traceback stored)"),
    ])


def _when(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(ms / 1000)) if ms else "-"


def _indented(text: str) -> str:
    return "\n".join(f"    {one_line(line)}" for line in text.rstrip("\n").splitlines())


def _tasks(n: int) -> str:
    return f"{n} task" if n == 1 else f"{n} tasks"


def one_line(text: str) -> str:
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _int(value: bytes | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0
