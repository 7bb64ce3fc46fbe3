"""``corral dashboard``: the subcommand this distribution adds to the ``corral``
command line (registered through the ``corral.commands`` entry point)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal

from corral.cli.args import (
    Subcommands,
    UsageError,
    int_range,
    prefix_of,
    queue_arg,
    seconds,
    url_of,
)
from corral.connection import connect, redact
from corral.logs import setup_logging
from corral_dashboard.security import MIN_TOKEN_CHARS
from corral_dashboard.server import Dashboard, Settings

TOKEN_ENV = "CORRAL_DASHBOARD_TOKEN"
log = logging.getLogger("corral.dashboard")


def register(subcommands: Subcommands) -> None:
    command = subcommands.add_parser(
        "dashboard", help="serve a web dashboard of queues, workers, tasks and dead letters")
    command.add_argument("--redis-url", default=argparse.SUPPRESS, help="Redis URL")
    command.add_argument("--host", default="127.0.0.1",
                         help="address to bind (default 127.0.0.1; 0.0.0.0 in a pod)")
    command.add_argument("--port", type=int_range(0, 65_535), default=8000,
                         help="port to serve on; 0 picks a free one (default 8000)")
    command.add_argument("--allow-actions", action="store_true",
                         help="allow requeue, purge and cancel (default: read-only); "
                              "needs a token")
    command.add_argument("--token", default=None,
                         help=f"token that allows actions (default: ${TOKEN_ENV}); at least "
                              f"{MIN_TOKEN_CHARS} characters")
    command.add_argument("--grafana-url", default=None,
                         help="link to this Grafana dashboard from every page")
    command.add_argument("--queue", type=queue_arg, action="append", dest="queues",
                         help="queue to show (repeatable; default: every queue found)")
    command.add_argument("--rescan-seconds", type=seconds, default=30.0,
                         help="how often to look for new queues, by SCAN (default 30)")
    command.add_argument("--sample-seconds", type=seconds, default=5.0,
                         help="interval of the throughput samples (default 5)")
    command.add_argument("--secure-cookies", action="store_true",
                         help="mark cookies Secure (when served over HTTPS)")
    command.add_argument("--log-format", choices=("text", "json"), default="text",
                         help="log format (default text)")
    command.add_argument("--log-level", default="INFO",
                         choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                         help="log level (default INFO)")
    command.set_defaults(run=run_dashboard_command)


def settings_of(args: argparse.Namespace) -> Settings:
    token = args.token or os.environ.get(TOKEN_ENV) or None
    if args.allow_actions and not token:
        raise UsageError(f"--allow-actions needs a token: pass --token or set ${TOKEN_ENV}")
    if args.allow_actions and token and len(token) < MIN_TOKEN_CHARS:
        raise UsageError(f"the token must be at least {MIN_TOKEN_CHARS} characters")
    if args.sample_seconds <= 0:
        raise UsageError("--sample-seconds must be more than 0")
    return Settings(
        redis_url=url_of(args), host=args.host, port=args.port,
        token=token if args.allow_actions else None, grafana_url=args.grafana_url,
        queues=tuple(args.queues or ()), rescan_s=args.rescan_seconds,
        sample_s=args.sample_seconds, secure_cookies=args.secure_cookies,
        prefix=prefix_of(args),
    )


def run_dashboard_command(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    setup_logging(args.log_format, args.log_level)
    asyncio.run(serve(settings))
    return 0


async def serve(settings: Settings) -> None:
    dashboard = Dashboard(settings, connect(settings.redis_url))
    try:
        try:
            url = await dashboard.start()
        except OSError as exc:
            raise UsageError(f"cannot serve on {settings.host}:{settings.port}: "
                             f"{exc.strerror or exc}; --port 0 picks a free port") from None
        mode = "actions allowed with the token" if settings.token else "read-only"
        log.info("dashboard on %s (%s; redis %s; JSON API under %sapi/)", url, mode,
                 redact(settings.redis_url), url)
        await _until_signalled()
    finally:
        await dashboard.stop()


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):
                loop.remove_signal_handler(sig)
