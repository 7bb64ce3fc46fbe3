"""The long chaos run: by default 100,000 tasks on four worker processes, a random worker
killed every few seconds and started again, and one Redis restart (append-only file on)
halfway; once with SIGKILL and once with SIGTERM. Prints lost and duplicated tasks, the
total time and the recovery time after each kill, and a Markdown table row per run.

    .venv/bin/python -m bench.chaos                      # both runs, 100,000 tasks each
    .venv/bin/python -m bench.chaos --tasks 20000 --signal kill

The short form of the same run is part of the test suite (tests/chaos/)."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from collections.abc import Sequence

from corral.embedded import EmbeddedRedis
from tests.chaos.harness import ChaosConfig, ChaosReport, KillSignal, run_chaos

TABLE_HEADER = (
    "| signal | tasks | kills | in flight at kills | lost | duplicated | total | tasks/s "
    "| recovery after a kill (median / worst) | Redis restart: down / tasks again after |\n"
    "|---|---|---|---|---|---|---|---|---|---|"
)


def table_row(report: ChaosReport) -> str:
    c = report.config
    recoveries = [k.recovery_s for k in report.kills if k.recovery_s is not None]
    recovery = (f"{statistics.median(recoveries):.2f} s / {max(recoveries):.2f} s"
                if recoveries else "n/a")
    restart = report.redis_restart
    outage = "n/a"
    if restart is not None:
        resumed = f"{restart.resumed_s:.2f} s" if restart.resumed_s is not None else "n/a"
        outage = f"{restart.down_s:.2f} s / {resumed}"
    return (
        f"| {c.kill_signal} | {c.tasks:,} | {len(report.kills)} | {report.in_flight_at_kills} "
        f"| {len(report.lost)} | {report.duplicated} | {report.total_s:.0f} s "
        f"| {c.tasks / report.total_s:.0f} | {recovery} | {outage} |"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--signal", choices=("kill", "term", "both"), default="both")
    parser.add_argument("--kill-every", type=float, default=3.0, help="seconds (about)")
    parser.add_argument("--task-sleep", type=float, default=0.05, help="seconds per task")
    parser.add_argument("--lease", type=float, default=4.0, help="--lease-seconds (SIGKILL)")
    parser.add_argument("--term-lease", type=float, default=10.0,
                        help="--lease-seconds for the SIGTERM run, above the Redis outage")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--no-redis-restart", action="store_true")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=3_600.0, help="seconds per run")
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> int:
    signals: list[KillSignal] = {
        "kill": ["SIGKILL"], "term": ["SIGTERM"], "both": ["SIGKILL", "SIGTERM"]
    }[args.signal]
    reports = []
    for kill_signal in signals:
        config = ChaosConfig(
            tasks=args.tasks, workers=args.workers, kill_signal=kill_signal,
            kill_every_s=args.kill_every, task_sleep_s=args.task_sleep,
            concurrency=args.concurrency, batch_size=args.batch_size,
            lease_s=args.lease if kill_signal == "SIGKILL" else args.term_lease,
            restart_redis=not args.no_redis_restart, timeout_s=args.timeout, seed=args.seed,
        )
        with EmbeddedRedis(appendonly=True) as server:
            report = await run_chaos(server, config, log=lambda line: print(line, flush=True))
        print(report.summary(), flush=True)
        reports.append(report)
    print()
    print(TABLE_HEADER)
    for report in reports:
        print(table_row(report))
    failed = [r for r in reports if r.lost or r.duplicated > r.in_flight_at_faults or (
        r.config.kill_signal == "SIGTERM" and r.duplicated)]
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> None:
    sys.exit(asyncio.run(run(parse_args(argv))))


if __name__ == "__main__":
    main()
