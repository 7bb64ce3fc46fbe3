"""``corral worker`` and ``corral demo``: the subcommands this distribution adds to the
``corral`` command line (registered through the ``corral.commands`` entry point)."""

from __future__ import annotations

import argparse
import os
import sys

from pydantic import ValidationError

from corral import defaults
from corral.app import App, load_app, resolve_prefix
from corral.cli.args import (
    CliError,
    Subcommands,
    UsageError,
    given_prefix,
    int_range,
    seconds,
    url_of,
)
from corral.logs import setup_logging
from corral_worker.settings import (
    DEFAULT_METRICS_HOST,
    DEFAULT_QUEUES,
    WorkerSettings,
    parse_queue_weights,
)


def register(subcommands: Subcommands) -> None:
    _add_worker(subcommands)
    _add_demo(subcommands)


def _queue_weights(text: str) -> dict[str, int]:
    try:
        return parse_queue_weights(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_worker(subcommands: Subcommands) -> None:
    text = "run a worker: claim tasks of the app from its queues and run them"
    worker = subcommands.add_parser("worker", help="run a worker", description=text)
    worker.add_argument("app", nargs="?", default=argparse.SUPPRESS, metavar="MODULE:ATTR",
                        help="the corral.App to serve (default: --app, then $CORRAL_APP)")
    worker.add_argument("--redis-url", default=argparse.SUPPRESS, help="Redis URL")
    worker.add_argument("--queues", type=_queue_weights, default=dict(DEFAULT_QUEUES),
                        help="queues with weights, e.g. critical=5,default=1 (default: "
                             f"{','.join(DEFAULT_QUEUES)})")
    concurrency, batch_size = defaults.CONCURRENCY, defaults.BATCH_SIZE
    worker.add_argument("--concurrency", type=int_range(concurrency.min, concurrency.max),
                        default=concurrency.default,
                        help=f"tasks running at once (default {concurrency.default})")
    worker.add_argument("--batch-size", type=int_range(batch_size.min, batch_size.max),
                        default=batch_size.default,
                        help="tasks claimed per round trip and prefetched per queue "
                             f"(default {batch_size.default})")
    worker.add_argument("--metrics-port", type=int_range(-1, 65_535),
                        default=defaults.METRICS_PORT,
                        help="port for /metrics, /healthz, /readyz, /debug/tasks; 0 picks a "
                             "free one, -1 turns the server off "
                             f"(default {defaults.METRICS_PORT})")
    worker.add_argument("--metrics-host", default=DEFAULT_METRICS_HOST,
                        help=f"address to bind (default {DEFAULT_METRICS_HOST}; "
                             "0.0.0.0 in a pod)")
    # Seconds are checked against their bounds by WorkerSettings.
    lease, grace = defaults.LEASE_S.default, defaults.GRACE_S.default
    worker.add_argument("--lease-seconds", type=seconds, default=float(lease),
                        help=f"lease per claimed task, renewed while it runs (default {lease})")
    worker.add_argument("--grace-seconds", type=seconds, default=float(grace),
                        help=f"on SIGTERM, how long running tasks may finish (default {grace})")
    worker.add_argument("--worker-id", default=None,
                        help="registry id (default: $POD_NAME on Kubernetes, else "
                             "HOSTNAME-PID)")
    worker.add_argument("--no-debug-endpoint", action="store_true",
                        help="do not serve /debug/tasks")
    worker.add_argument("--log-format", choices=("text", "json"), default="text",
                        help="log lines as text or as JSON objects (default text)")
    worker.add_argument("--log-level", default=defaults.LOG_LEVEL, choices=defaults.LOG_LEVELS,
                        help=f"least severe level logged (default {defaults.LOG_LEVEL})")
    worker.set_defaults(run=run_worker_command)


def _add_demo(subcommands: Subcommands) -> None:
    text = "run a worker and a sample workload on a private Redis/Valkey"
    demo = subcommands.add_parser("demo", help=text, description=text)
    demo.add_argument("--tasks", type=int_range(1, 10_000_000), default=20_000,
                      help="how many sample tasks to run (default 20000)")
    demo.add_argument("--redis-url", default=argparse.SUPPRESS,
                      help="use this Redis instead of a private one")
    demo.set_defaults(run=run_demo_command)


# The options that set each WorkerSettings field, for messages.
_OPTION_OF_FIELD = {
    "redis_url": "--redis-url", "queues": "--queues", "concurrency": "--concurrency",
    "batch_size": "--batch-size", "lease_s": "--lease-seconds", "grace_s": "--grace-seconds",
    "metrics_host": "--metrics-host", "metrics_port": "--metrics-port",
    "worker_id": "--worker-id", "prefix": "--prefix",
}


def run_worker_command(args: argparse.Namespace) -> int:
    from corral_worker.http import BindError
    from corral_worker.runtime import run_worker

    setup_logging(args.log_format, args.log_level)
    path = getattr(args, "app", None) or os.environ.get("CORRAL_APP")
    if not path:
        raise UsageError("name the app to serve: corral worker MODULE:ATTR (or set $CORRAL_APP)")
    # Like other app servers: the app module is looked up from the current directory too.
    sys.path.insert(0, os.getcwd())
    app = load_app(path)
    settings = _settings(args, app)
    try:
        run_worker(app, settings)
    except BindError as exc:
        raise CliError(f"{exc}; choose another --metrics-port, or --metrics-port 0 for a "
                       "free one") from None
    return 0


def _settings(args: argparse.Namespace, app: App) -> WorkerSettings:
    prefix = resolve_prefix(given_prefix(args), app)
    try:
        return WorkerSettings(
            redis_url=url_of(args),
            prefix=prefix,
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
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        where = _OPTION_OF_FIELD.get(field, field.replace("_", "-"))
        raise UsageError(f"{where}: {_value_message(first['msg'])}") from None


def _value_message(text: str) -> str:
    # pydantic says "Input should be ..."; after "--option:" the input is the option's value.
    return text.replace("Input should", "should", 1) if text.startswith("Input ") else text


def run_demo_command(args: argparse.Namespace) -> int:
    from corral_worker.demo import run_demo

    return run_demo(getattr(args, "redis_url", None), args.tasks)
