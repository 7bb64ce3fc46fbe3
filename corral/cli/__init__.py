"""The ``corral`` command line. Every error is one line on stderr and a non-zero exit.

The core package holds the commands a producer needs (enqueue, status, inspect, dlq,
...). The worker and the operator are separate distributions that add their own
subcommands through the ``corral.commands`` entry point group, so the core never
imports the layers above it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine, Sequence
from importlib.metadata import entry_points
from typing import Any

from redis.exceptions import RedisError

from corral.cli import commands
from corral.cli.args import CliError, Parser, Subcommands, UsageError
from corral.connection import default_url, redact
from corral.errors import CorralError

Handler = Callable[[argparse.Namespace], Coroutine[Any, Any, int] | int]

# Subcommands that other distributions provide, and how to get them.
OPTIONAL_COMMANDS = {
    "worker": ("run a worker", "corral[worker]"),
    "demo": ("run a worker and a sample workload on a private Redis/Valkey", "corral[worker]"),
    "operator": ("run the Kubernetes operator", "corral[operator]"),
    "dashboard": ("serve a web dashboard", "corral[dashboard]"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="corral", description="Kubernetes-native async Python workers.")
    parser.add_argument("--redis-url", default=None,
                        help="Redis URL (default: $CORRAL_REDIS_URL, then redis://localhost:6379/0)")
    subcommands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    commands.register(subcommands)
    for plugin in entry_points(group="corral.commands"):
        plugin.load()(subcommands)
    for name, (text, extra) in OPTIONAL_COMMANDS.items():
        if name not in subcommands.choices:
            _add_missing(subcommands, name, text, extra)
    return parser


def _add_missing(subcommands: Subcommands, name: str, text: str, extra: str) -> None:
    """A subcommand whose distribution is not installed says how to install it."""

    def missing(args: argparse.Namespace) -> int:
        raise CliError(f"not installed here: pip install '{extra}'")

    stub = subcommands.add_parser(name, help=f"{text} (needs {extra})")
    stub.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    stub.set_defaults(run=missing)


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        code = _run(args)
    except KeyboardInterrupt:
        code = 130
    except UsageError as exc:
        print(f"corral {args.command}: error: {exc}", file=sys.stderr)
        code = 2
    except (CliError, CorralError, KeyError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"corral {args.command}: error: {message}", file=sys.stderr)
        code = 1
    except (RedisError, ConnectionError, TimeoutError) as exc:
        url = redact(getattr(args, "redis_url", None) or default_url())
        print(f"corral {args.command}: error: redis at {url}: {exc}", file=sys.stderr)
        code = 1
    sys.exit(code)


def _run(args: argparse.Namespace) -> int:
    run: Handler = args.run
    outcome = run(args)
    if isinstance(outcome, int):
        return outcome
    return asyncio.run(outcome)
