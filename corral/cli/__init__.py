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
from importlib.metadata import PackageNotFoundError, entry_points, version
from typing import Any

from redis.exceptions import NoPermissionError, RedisError

from corral.cli import commands
from corral.cli.args import CliError, Parser, Subcommands, UsageError, prefix_arg
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
    parser.add_argument("--version", action="version", version=f"corral {_version()}",
                        help="print the version and exit")
    _add_global_options(parser, default=None)
    subcommands = parser.add_subparsers(dest="command", required=True, parser_class=Parser,
                                        metavar="COMMAND")
    commands.register(subcommands)
    for plugin in entry_points(group="corral.commands"):
        plugin.load()(subcommands)
    for name, (text, extra) in OPTIONAL_COMMANDS.items():
        if name not in subcommands.choices:
            _add_missing(subcommands, name, text, extra)
    _share_global_options(parser)
    return parser


def _version() -> str:
    try:
        return version("corral")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree
        return "unknown"


def _add_global_options(parser: argparse.ArgumentParser, default: Any) -> None:
    """The options every command takes, before or after its name. Below the top level
    their default is SUPPRESS, so an option given before the command is not reset."""
    options = parser._option_string_actions
    if "--redis-url" not in options:
        parser.add_argument("--redis-url", default=default, help=(
            "Redis URL (default: $CORRAL_REDIS_URL, then redis://localhost:6379/0)"))
    if "--prefix" not in options:
        parser.add_argument("--prefix", type=prefix_arg, default=default, help=(
            "key prefix of the application in Redis (default: $CORRAL_PREFIX, then the "
            "app's App(prefix=...), then corral)"))
    if "--app" not in options:
        parser.add_argument("--app", default=default, metavar="MODULE:ATTR", help=(
            "the corral.App that defines the tasks, so that enqueue knows their queues "
            "and refuses unknown names (default: $CORRAL_APP)"))


def _share_global_options(parser: argparse.ArgumentParser) -> None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                _add_global_options(child, default=argparse.SUPPRESS)
                # Errors name the command as typed: "corral dlq purge: error: ...".
                child.set_defaults(command_name=child.prog)
                _share_global_options(child)


def _add_missing(subcommands: Subcommands, name: str, text: str, extra: str) -> None:
    """A subcommand whose distribution is not installed says how to install it."""

    def missing(args: argparse.Namespace) -> int:
        raise CliError(f"not installed here: pip install '{extra}'")

    stub = subcommands.add_parser(name, help=f"{text} (needs {extra})",
                                  description=f"{text} (needs {extra})")
    stub.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    stub.set_defaults(run=missing)


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    name = getattr(args, "command_name", f"corral {args.command}")
    try:
        code = _run(args)
    except KeyboardInterrupt:
        code = 130
    except UsageError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        code = 2
    except (CliError, CorralError, KeyError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"{name}: error: {message}", file=sys.stderr)
        code = 1
    except NoPermissionError as exc:
        url = redact(getattr(args, "redis_url", None) or default_url())
        print(f"{name}: error: redis at {url}: permission denied: {exc} (see corral acl)",
              file=sys.stderr)
        code = 1
    except (RedisError, ConnectionError, TimeoutError) as exc:
        url = redact(getattr(args, "redis_url", None) or default_url())
        print(f"{name}: error: redis at {url}: {exc}", file=sys.stderr)
        code = 1
    sys.exit(code)


def _run(args: argparse.Namespace) -> int:
    run: Handler = args.run
    outcome = run(args)
    if isinstance(outcome, int):
        return outcome
    return asyncio.run(outcome)
