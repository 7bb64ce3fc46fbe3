"""``corral top``: a live terminal view of queues and workers. The view itself needs
the optional ``textual`` package (``pip install 'corral[top]'``); what it shows is
gathered by ``corral.monitor``."""

from __future__ import annotations

import argparse
import importlib.util
import sys

from corral.cli.args import CliError, Subcommands, prefix_of, queue_arg, url_of
from corral.connection import parse_url, redact

KEYS_HELP = ("keys: s cycles the queue sort, w the worker sort, f or / filters by queue "
             "name, escape clears the filter, r refreshes now, q quits")


def add_top(subcommands: Subcommands) -> None:
    text = "a live view of queues and workers, refreshed in place"
    command = subcommands.add_parser("top", help=text, description=f"{text}; {KEYS_HELP}")
    command.add_argument("--queue", type=queue_arg, action="append", dest="queues",
                         help="queue to show (repeatable; default: every queue found, "
                              "looked for again every 30 s)")
    command.add_argument("--interval", type=_interval, default=2.0,
                         help="seconds between refreshes (0.1-3600, default 2)")
    command.set_defaults(run=run_top)


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0.1 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"{text} is not between 0.1 and 3600 seconds")
    return value


def run_top(args: argparse.Namespace) -> int:
    url, prefix = url_of(args), prefix_of(args)
    parse_url(url)  # a bad URL is one line here, not an error inside the view
    if importlib.util.find_spec("textual") is None:
        raise CliError("the live view needs textual: pip install 'corral[top]' "
                       "(or use corral inspect)")
    from corral.cli.top_app import TopApp

    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise CliError("the live view needs a terminal; corral inspect --json prints once")
    TopApp(url, args.queues, args.interval, redact(url), prefix).run()
    return 0
