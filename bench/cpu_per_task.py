"""CPU time one worker process spends per task, a figure that holds on a busy machine
where throughput does not: one `corral worker` starts, then N no-op tasks are enqueued
and it drains them; its user+system CPU time from start-up done to queue drained is
read from /proc.

    python -m bench.cpu_per_task [--tasks 20000] [--runs 5] [--limited]

Prints the median (and each run) in microseconds per task. Compare two checkouts by
running it in each, alternating. ``--limited`` runs a no-op task with a rate and a
concurrency limit that never hold it back: the cost of checking them in the claim,
finish and heartbeat scripts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import corral
from corral.embedded import EmbeddedRedis

REPO = Path(__file__).resolve().parents[1]
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


async def fill(url: str, tasks: int, task: str) -> None:
    from bench.tasks_corral import app  # the producer writes the task's limits

    async with corral.Client.from_url(url, app=app) as client:
        for start in range(0, tasks, 5000):
            count = min(5000, tasks - start)
            await client.enqueue_many([corral.Enqueue(task, [0.0])] * count)


async def drained(url: str) -> bool:
    async with corral.Client.from_url(url) as client:
        depths = await corral.read_queue_depths(client.redis, ["default"])
    depth = depths["default"]
    return depth.backlog == 0 and depth.in_flight == 0


def one_run(server: EmbeddedRedis, tasks: int, record: Path, task: str
            ) -> tuple[float, float]:
    """(worker, Redis) CPU time per task in microseconds."""
    asyncio.run(server_flush(server.url))
    env = {**os.environ, "BENCH_RECORD_FILE": str(record)}
    worker = subprocess.Popen(
        [sys.executable, "-m", "corral", "worker", "bench.tasks_corral:app",
         "--redis-url", server.url, "--concurrency", "100", "--batch-size", "100",
         "--metrics-port", "-1"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert worker.stderr is not None
        for line in worker.stderr:  # start-up (imports, connections) is not counted
            if " started: queues " in line:
                break
        else:
            raise SystemExit("the worker did not start")
        assert server.process is not None
        before_s, redis_before_s = cpu_s(worker.pid), cpu_s(server.process.pid)
        asyncio.run(fill(server.url, tasks, task))
        deadline = time.monotonic() + 600
        while not asyncio.run(drained(server.url)):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the worker stopped, or did not drain in 10 minutes")
            time.sleep(0.1)
        return ((cpu_s(worker.pid) - before_s) / tasks * 1e6,
                (cpu_s(server.process.pid) - redis_before_s) / tasks * 1e6)
    finally:
        worker.terminate()
        worker.wait(60)


async def server_flush(url: str) -> None:
    async with corral.Client.from_url(url) as client:
        await client.redis.flushall()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cpu_per_task")
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--limited", action="store_true",
                        help="a no-op task with rate and concurrency limits")
    args = parser.parse_args()
    task = "noop_limited" if args.limited else "noop"
    with EmbeddedRedis() as server, tempfile.TemporaryDirectory() as tmp:
        pairs = [one_run(server, args.tasks, Path(tmp) / "records", task)
                 for _ in range(args.runs)]
    kind = "limited no-op" if args.limited else "no-op"
    for where, runs in (("worker", [w for w, _ in pairs]), ("redis", [r for _, r in pairs])):
        print(f"{where} CPU per {kind} task: median {statistics.median(runs):.1f} us "
              f"(runs: {', '.join(f'{r:.1f}' for r in runs)}; {args.tasks} tasks each)")


if __name__ == "__main__":
    main()
