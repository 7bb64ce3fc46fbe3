"""The ``corral`` command line. Every error is one line on stderr and a non-zero exit."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, NoReturn

from pydantic import ValidationError
from redis.exceptions import RedisError

from corral.connection import default_url, redact
from corral.errors import CorralError
from corral.keys import validate_queue_name


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class CliError(Exception):
    """A user-facing failure, printed as one line."""


def _json_arg(kind: type) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None
        if not isinstance(value, kind):
            raise argparse.ArgumentTypeError(f"must be a JSON {kind.__name__}")
        return value

    parse.__name__ = f"JSON {kind.__name__}"
    return parse


def _queue_arg(text: str) -> str:
    try:
        return validate_queue_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _int_range(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not between {low} and {high}")
        return value

    parse.__name__ = "integer"
    return parse


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite, non-negative number")
    return value


def _queue_weights(text: str) -> dict[str, int]:
    from corral.worker.settings import parse_queue_weights

    try:
        return parse_queue_weights(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="corral", description="Kubernetes-native async Python workers.")
    parser.add_argument("--redis-url", default=None,
                        help="Redis URL (default: $CORRAL_REDIS_URL, then redis://localhost:6379/0)")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    worker = commands.add_parser("worker", help="run a worker")
    worker.add_argument("app", help="the corral.App to serve, as MODULE:ATTR")
    worker.add_argument("--redis-url", default=argparse.SUPPRESS, help="Redis URL")
    worker.add_argument("--queues", type=_queue_weights, default={"default": 1},
                        help="queues with weights, e.g. critical=5,default=1 (default: default)")
    worker.add_argument("--concurrency", type=_int_range(1, 10_000), default=50,
                        help="tasks running at once (default 50)")
    worker.add_argument("--batch-size", type=_int_range(1, 1_000), default=25,
                        help="tasks claimed per round trip and prefetched per queue (default 25)")
    worker.add_argument("--metrics-port", type=_int_range(-1, 65_535), default=9100,
                        help="port for /metrics, /healthz, /readyz, /debug/tasks; 0 picks a "
                             "free one, -1 turns the server off (default 9100)")
    worker.add_argument("--metrics-host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1; 0.0.0.0 in a pod)")
    worker.add_argument("--lease-seconds", type=_seconds, default=30.0,
                        help="lease per claimed task, renewed while it runs (default 30)")
    worker.add_argument("--grace-seconds", type=_seconds, default=30.0,
                        help="on SIGTERM, how long running tasks may finish (default 30)")
    worker.add_argument("--worker-id", default=None, help="registry id (default: hostname)")
    worker.add_argument("--no-debug-endpoint", action="store_true",
                        help="do not serve /debug/tasks")
    worker.add_argument("--log-format", choices=("text", "json"), default="text")
    worker.add_argument("--log-level", default="INFO",
                        choices=("DEBUG", "INFO", "WARNING", "ERROR"))

    enqueue = commands.add_parser("enqueue", help="enqueue one task")
    enqueue.add_argument("task", help="task name")
    enqueue.add_argument("--args", type=_json_arg(list), default=[], help="JSON list")
    enqueue.add_argument("--kwargs", type=_json_arg(dict), default={}, help="JSON object")
    enqueue.add_argument("--queue", type=_queue_arg, default="default")
    enqueue.add_argument("--priority", type=_int_range(0, 9), default=0, help="0-9, 9 first")
    enqueue.add_argument("--delay", type=_seconds, default=0.0, help="seconds before it may run")
    enqueue.add_argument("--key", default=None, help="de-duplication key")
    enqueue.add_argument("--wait", type=_seconds, default=None,
                         help="wait up to this many seconds for the result and print it")

    for name, text in (("status", "print a task's status"), ("cancel", "cancel a task")):
        command = commands.add_parser(name, help=text)
        command.add_argument("id")
        command.add_argument("--queue", type=_queue_arg, default="default")

    result = commands.add_parser("result", help="wait for a task's result and print it")
    result.add_argument("id")
    result.add_argument("--queue", type=_queue_arg, default="default")
    result.add_argument("--timeout", type=_seconds, default=10.0)

    inspect = commands.add_parser("inspect", help="queues, backlogs and live workers")
    inspect.add_argument("--queue", type=_queue_arg, action="append", dest="queues",
                         help="queue to show (repeatable; default: every queue found)")
    inspect.add_argument("--json", action="store_true", help="print JSON")

    dlq = commands.add_parser("dlq", help="the dead-letter queue")
    dlq.add_argument("action", choices=("list", "requeue", "purge"))
    dlq.add_argument("ids", nargs="*", help="task ids (default: all)")
    dlq.add_argument("--queue", type=_queue_arg, default="default")
    dlq.add_argument("--limit", type=_int_range(1, 100_000), default=100)

    operator = commands.add_parser("operator", help="run the Kubernetes operator")
    operator.add_argument("--namespace", action="append", dest="namespaces", default=[],
                          help="namespace to watch (repeatable; default: all)")
    operator.add_argument("--metrics-port", type=_int_range(0, 65_535), default=8080)
    operator.add_argument("--health-port", type=_int_range(0, 65_535), default=8081)
    operator.add_argument("--host", default="0.0.0.0",
                          help="address of the metrics and health endpoints (default 0.0.0.0)")
    operator.add_argument("--peering", default=None,
                          help="kopf peering name, for several operator replicas with one "
                               "active (default: standalone)")
    operator.add_argument("--priority", type=int, default=None,
                          help="kopf peering priority; the highest live replica is active "
                               "(default: from the start time, so the oldest replica wins)")
    operator.add_argument("--peering-lifetime", type=_int_range(1, 3600), default=20,
                          metavar="SECONDS",
                          help="how long a replica that stopped without a goodbye keeps "
                               "the others on standby (default 20)")
    operator.add_argument("--log-format", choices=("text", "json"), default="text")

    demo = commands.add_parser(
        "demo", help="run a worker and a sample workload on a private Redis/Valkey"
    )
    demo.add_argument("--tasks", type=_int_range(1, 10_000_000), default=20_000)
    demo.add_argument("--redis-url", default=argparse.SUPPRESS,
                      help="use this Redis instead of a private one")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        code = _run(args)
    except KeyboardInterrupt:
        code = 130
    except (CliError, CorralError, KeyError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"corral {args.command}: error: {message}", file=sys.stderr)
        code = 1
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        print(f"corral {args.command}: error: {where}: {first['msg']}", file=sys.stderr)
        code = 2
    except (RedisError, ConnectionError, TimeoutError) as exc:
        url = redact(getattr(args, "redis_url", None) or default_url())
        print(f"corral {args.command}: error: redis at {url}: {exc}", file=sys.stderr)
        code = 1
    sys.exit(code)


def _run(args: argparse.Namespace) -> int:
    from corral import commands

    handlers: dict[str, Callable[[argparse.Namespace], Coroutine[Any, Any, int] | int]] = {
        "worker": commands.worker,
        "enqueue": commands.enqueue,
        "status": commands.status,
        "cancel": commands.cancel,
        "result": commands.result,
        "inspect": commands.inspect,
        "dlq": commands.dlq,
        "operator": commands.operator,
        "demo": commands.demo,
    }
    outcome = handlers[args.command](args)
    if isinstance(outcome, int):
        return outcome
    return asyncio.run(outcome)
