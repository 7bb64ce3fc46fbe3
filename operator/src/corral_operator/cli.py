"""``corral operator``: the subcommand this distribution adds to the ``corral`` command
line (registered through the ``corral.commands`` entry point)."""

from __future__ import annotations

import argparse

from corral.cli.args import Subcommands, int_range
from corral.logs import setup_logging
from corral_operator.shards import WHOLE, Shard


def shard_arg(text: str) -> Shard:
    try:
        return Shard.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(subcommands: Subcommands) -> None:
    operator = subcommands.add_parser("operator", help="run the Kubernetes operator")
    operator.add_argument("--namespace", action="append", dest="namespaces", default=[],
                          help="namespace to watch (repeatable; default: all)")
    operator.add_argument("--metrics-port", type=int_range(0, 65_535), default=8080,
                          help="port for /metrics (default 8080)")
    operator.add_argument("--health-port", type=int_range(0, 65_535), default=8081,
                          help="port for the liveness endpoint /healthz (default 8081)")
    operator.add_argument("--host", default="0.0.0.0",
                          help="address of the metrics and health endpoints (default 0.0.0.0)")
    operator.add_argument("--peering", default=None,
                          help="kopf peering name, for several operator replicas with one "
                               "active (default: standalone)")
    operator.add_argument("--priority", type=int, default=None,
                          help="kopf peering priority; the highest live replica is active "
                               "(default: from the start time, so the oldest replica wins)")
    operator.add_argument("--peering-lifetime", type=int_range(1, 3600), default=20,
                          metavar="SECONDS",
                          help="how long a replica that stopped without a goodbye keeps "
                               "the others on standby (default 20)")
    operator.add_argument("--shard", type=shard_arg, default=WHOLE, metavar="I/N",
                          help="handle only the TaskQueues whose uid hashes to shard I of N "
                               "(0-based); with --peering, each shard peers on its own "
                               "(default: every TaskQueue)")
    operator.add_argument("--log-format", choices=("text", "json"), default="text",
                          help="log lines as text or as JSON objects (default text)")
    operator.set_defaults(run=run_operator_command)


def run_operator_command(args: argparse.Namespace) -> int:
    from corral_operator.main import run_operator

    setup_logging(args.log_format)
    run_operator(
        namespaces=args.namespaces, metrics_port=args.metrics_port, health_port=args.health_port,
        host=args.host, peering=args.peering, priority=args.priority,
        peering_lifetime_s=args.peering_lifetime, shard=args.shard,
    )
    return 0
