"""Dead-letter operations on a big dead-letter queue: how long each script call holds
Redis (SLOWLOG with every call logged) and how long the whole command takes.

    .venv/bin/python -m bench.admin_ops [--tasks 100000]

On a private Redis it stores ``--tasks`` dead tasks (as the finish script stores them),
then runs ``corral dlq list``, ``corral dlq requeue --all`` and, on a fresh set,
``corral dlq purge --all``, and prints one line per command for docs/benchmarks.md."""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import redis

from bench.cpu import first_in_line
from corral.embedded import EmbeddedRedis
from corral.keys import DEFAULT_PREFIX, queue_keys

REPO = Path(__file__).resolve().parents[1]
KEYS = queue_keys("default", DEFAULT_PREFIX)


def bury(conn: redis.Redis, count: int) -> None:
    ids = [uuid.uuid4().hex for _ in range(count)]
    for start in range(0, count, 5000):
        with conn.pipeline(transaction=False) as pipe:
            for i, task_id in enumerate(ids[start : start + 5000], start):
                pipe.hset(KEYS.task(task_id), mapping={
                    "name": "noop", "payload": '{"args":[1],"kwargs":{}}', "prio": 0,
                    "state": "dead", "attempts": 1, "dead_ms": i,
                    "error": '{"type":"ValueError","message":"boom","traceback":""}',
                })
                pipe.zadd(KEYS.dead, {task_id: 4_000_000_000_000 + i})
            pipe.execute()


def measure(conn: redis.Redis, url: str, *command: str) -> str:
    conn.slowlog_reset()
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "corral", "--redis-url", url, *command],
                            capture_output=True, text=True, check=True, cwd=REPO)
    wall_s = time.monotonic() - started
    # The harness's own SLOWLOG RESET (freeing the last run's log) is not the command's.
    entries = [e for e in conn.slowlog_get(1_000_000)
               if not e["command"].upper().startswith(b"SLOWLOG")]
    scripts = [e["duration"] for e in entries if e["command"].upper().startswith(b"EVAL")]
    others = [e["duration"] for e in entries if not e["command"].upper().startswith(b"EVAL")]
    durations = scripts or others
    worst = max(durations, default=0)
    median = statistics.median(durations) if durations else 0
    kind = "script calls" if scripts else "commands"
    last = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    if command[1] == "list":
        last = f"{len(result.stdout.splitlines())} lines"
    return (f"| `corral {' '.join(command)}` | {last} | {wall_s:.1f} s | {len(durations)} "
            f"{kind} | {median / 1000:.2f} ms | {worst / 1000:.2f} ms |")


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench.admin_ops")
    parser.add_argument("--tasks", type=int, default=100_000)
    args = parser.parse_args()
    with EmbeddedRedis() as server, redis.Redis.from_url(server.url) as conn, \
            first_in_line(server.process.pid if server.process else 0) as realtime:
        print(f"Redis at real-time priority: {realtime}")
        conn.config_set("slowlog-log-slower-than", 0)  # every command
        conn.config_set("slowlog-max-len", 1_000_000)
        print("| command | output | wall time | Redis calls | median call | slowest call |")
        print("|---|---|---:|---:|---:|---:|")
        bury(conn, args.tasks)
        print(measure(conn, server.url, "dlq", "list", "--limit", str(args.tasks)))
        print(measure(conn, server.url, "dlq", "requeue", "--all"))
        bury(conn, args.tasks)
        print(measure(conn, server.url, "dlq", "purge", "--all"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
