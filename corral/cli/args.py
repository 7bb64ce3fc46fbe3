"""Argument types and the parser class shared by every ``corral`` subcommand, the
worker's and the operator's included."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeAlias

from corral.app import App, load_app, resolve_prefix
from corral.connection import default_url
from corral.keys import validate_prefix, validate_queue_name

# What a component's ``register`` function receives to add its subcommands to.
Subcommands: TypeAlias = "argparse._SubParsersAction[Parser]"


class Parser(argparse.ArgumentParser):
    """Usage errors are one line, and point to --help."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class CliError(Exception):
    """A user-facing failure, printed as one line."""


class UsageError(CliError):
    """Input that the parser could not check (for example settings validated later);
    exits 2 like an argument error."""


def url_of(args: argparse.Namespace) -> str:
    """The Redis URL: --redis-url, then $CORRAL_REDIS_URL, then the default."""
    return getattr(args, "redis_url", None) or default_url()


def given_prefix(args: argparse.Namespace) -> str | None:
    """The key prefix asked for: --prefix, then $CORRAL_PREFIX; None when neither is."""
    return getattr(args, "prefix", None) or os.environ.get("CORRAL_PREFIX") or None


def app_of(args: argparse.Namespace) -> App | None:
    """The App named by --app or $CORRAL_APP, if any (looked up from the current
    directory too, like the worker does)."""
    path = getattr(args, "app", None) or os.environ.get("CORRAL_APP")
    if not path:
        return None
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    return load_app(path)


def prefix_of(args: argparse.Namespace, app: App | None = None) -> str:
    """The key prefix a command uses: --prefix, $CORRAL_PREFIX, the app's, ``corral``."""
    return resolve_prefix(given_prefix(args), app if app is not None else app_of(args))


def prefix_arg(text: str) -> str:
    try:
        return validate_prefix(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def json_arg(kind: type) -> Callable[[str], Any]:
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


def queue_arg(text: str) -> str:
    try:
        return validate_queue_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def int_range(low: int, high: int) -> Callable[[str], int]:
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


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite, non-negative number")
    return value
