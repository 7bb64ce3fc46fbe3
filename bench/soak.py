"""Soak: a producer and workers at a fixed rate for minutes, with Redis's memory sampled
every second. With the retention defaults (payload dropped at the end, results kept
for the result TTL, dead letters bounded) the memory must level off once the first
results start to expire; this run checks that it does and plots it.

    .venv/bin/python -m bench.soak                      # 5,000 tasks/s for 10 minutes
    .venv/bin/python -m bench.soak --minutes 30 --rate 2000

It starts a private Redis (no persistence), ``--workers`` ``corral worker`` processes
and ``--producers`` producer processes that enqueue with ``Client.enqueue_many`` on a
fixed schedule (catching up after a slow tick, never ahead), and samples from this one.
It prints a summary for docs/benchmarks.md and writes the plot
(docs/img/soak-memory.png by default). It exits 1 when the memory did not level off:
the last fifth of the run grew more than ``--max-growth`` over the fifth before it."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import redis.asyncio

import corral
from bench.procs import Workers
from corral.depths import read_queue_depths
from corral.embedded import EmbeddedRedis

REPO = Path(__file__).resolve().parents[1]
TICK_S = 0.05
SAMPLE_S = 1.0
MIB = 1024 * 1024


@dataclass
class Sample:
    t_s: float
    used_memory: int
    keys: int
    sent: int
    backlog: int
    in_flight: int


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=5000, help="tasks per second (5000)")
    parser.add_argument("--minutes", type=float, default=10.0, help="run length (10)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (2)")
    parser.add_argument("--producers", type=int, default=2, help="producer processes (2)")
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--result-ttl", type=float, default=60.0,
                        help="the task's result TTL in seconds (60): the plateau comes after it")
    parser.add_argument("--max-growth", type=float, default=0.05,
                        help="largest growth of the last fifth over the one before (0.05)")
    parser.add_argument("--plot", type=Path, default=REPO / "docs" / "img" / "soak-memory.png")
    parser.add_argument("--json", type=Path, default=None, help="write the samples here")
    parser.add_argument("--produce-to", default=None, help=argparse.SUPPRESS)  # a producer
    return parser.parse_args(argv)


async def _produce(client: corral.Client, rate: float, stop_at: float, sent: list[int]) -> None:
    started = time.monotonic()
    note = "x" * 64
    while (now := time.monotonic()) < stop_at:
        due = int((now - started) * rate) - sent[0]
        # After a slow tick, catch up by at most two ticks' worth: a fixed rate, not a burst.
        count = min(due, int(rate * TICK_S * 2) + 1)
        if count > 0:
            first = sent[0]
            await client.enqueue_many(
                [corral.Enqueue("soak.work", args=[first + i, note]) for i in range(count)]
            )
            sent[0] += count
        await asyncio.sleep(max(0.0, TICK_S - (time.monotonic() - now)))


async def _producer_main(url: str, rate: float, seconds: float) -> None:
    """One producer process: ``rate`` tasks/s for ``seconds``; counts in ``soak:sent``."""
    client = corral.Client.from_url(url)
    sent = [0]
    counter = asyncio.create_task(_count_sent(client, sent))
    try:
        await _produce(client, rate, time.monotonic() + seconds, sent)
    finally:
        counter.cancel()
        await client.redis.incrby(SENT_KEY, sent[0] - _reported[0])
        await client.close()


SENT_KEY = "soak:sent"
_reported = [0]


async def _count_sent(client: corral.Client, sent: list[int]) -> None:
    while True:
        await asyncio.sleep(SAMPLE_S / 2)
        now = sent[0]
        await client.redis.incrby(SENT_KEY, now - _reported[0])
        _reported[0] = now


async def _sample(conn: redis.asyncio.Redis, started: float, samples: list[Sample],
                  stop: asyncio.Event) -> None:
    while not stop.is_set():
        info = await conn.info("memory")
        depth = (await read_queue_depths(conn, ["default"]))["default"]
        samples.append(Sample(
            t_s=time.monotonic() - started, used_memory=int(info["used_memory"]),
            keys=int(await conn.dbsize()), sent=int(await conn.get(SENT_KEY) or 0),
            backlog=depth.backlog, in_flight=depth.in_flight,
        ))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SAMPLE_S)


async def _run(args: argparse.Namespace, url: str, env: dict[str, str]) -> list[Sample]:
    conn = redis.asyncio.Redis.from_url(url)
    samples: list[Sample] = []
    stop = asyncio.Event()
    started = time.monotonic()
    sampler = asyncio.create_task(_sample(conn, started, samples, stop))
    producers = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.soak", "--produce-to", url,
            "--rate", str(args.rate / args.producers), "--minutes", str(args.minutes),
            cwd=REPO, env=env)
        for _ in range(args.producers)
    ]
    try:
        codes = [await p.wait() for p in producers]
        if any(codes):
            raise SystemExit(f"a producer failed: exit codes {codes}")
    finally:
        for p in producers:
            if p.returncode is None:
                p.kill()
                await p.wait()
        stop.set()
        await sampler
        await conn.aclose()
    return samples


def _window_mean(samples: list[Sample], lo: float, hi: float) -> float:
    end = samples[-1].t_s
    picked = [s.used_memory for s in samples if lo * end <= s.t_s < hi * end]
    return sum(picked) / max(1, len(picked))


def _plot(samples: list[Sample], args: argparse.Namespace, path: Path) -> None:
    # Imported here: only the plot needs matplotlib (the benchmarks' venv has it).
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    minutes = [s.t_s / 60 for s in samples]
    ax.plot(minutes, [s.used_memory / MIB for s in samples], color="#1f6f43",
            label="Redis used_memory")
    ax.axvline(args.result_ttl / 60, color="#888", linestyle=":",
               label=f"result TTL ({args.result_ttl:g} s)")
    ax.set_xlabel("minutes")
    ax.set_ylabel("MiB")
    ax.set_ylim(bottom=0)
    backlog = ax.twinx()
    backlog.plot(minutes, [s.backlog for s in samples], color="#c77", linewidth=0.8,
                 label="backlog (tasks)")
    backlog.set_ylabel("backlog (tasks)")
    backlog.set_ylim(bottom=0)
    lines = ax.get_legend_handles_labels()
    more = backlog.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], loc="lower right", fontsize=8)
    ax.set_title(f"Soak: {args.rate:,} tasks/s offered, {args.workers} workers")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _summary(samples: list[Sample], args: argparse.Namespace) -> dict[str, float]:
    last = samples[-1]
    finished = last.sent - last.backlog - last.in_flight
    earlier = _window_mean(samples, 0.6, 0.8)
    final = _window_mean(samples, 0.8, 1.01)
    return {
        "minutes": round(last.t_s / 60, 2),
        "offered_per_s": args.rate,
        "enqueued_per_s": round(last.sent / last.t_s),
        "finished_per_s": round(finished / last.t_s),
        "backlog_at_end": last.backlog,
        "memory_start_mib": round(samples[0].used_memory / MIB, 1),
        "memory_peak_mib": round(max(s.used_memory for s in samples) / MIB, 1),
        "memory_last_fifth_mib": round(final / MIB, 1),
        "growth_last_fifth": round(final / earlier - 1, 4),
        "keys_at_end": last.keys,
    }


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    if args.produce_to:
        asyncio.run(_producer_main(args.produce_to, args.rate, args.minutes * 60))
        return 0
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"corral-soak-{os.getpid()}.log"
    with EmbeddedRedis() as server:
        env = {**os.environ, "PYTHONPATH": str(REPO),
               "CORRAL_SOAK_RESULT_TTL_S": str(args.result_ttl)}
        argvs = [
            [sys.executable, "-m", "corral", "worker", "bench.tasks_soak:app",
             "--redis-url", server.url, "--concurrency", str(args.concurrency),
             "--batch-size", str(args.batch_size), "--metrics-port", "-1",
             "--worker-id", f"soak-{i}", "--log-level", "WARNING"]
            for i in range(args.workers)
        ]
        with Workers(argvs, env, REPO, log_path) as workers:
            workers.wait_idle(cap_s=30)
            samples = asyncio.run(_run(args, server.url, env))
            workers.check_alive()
    summary = _summary(samples, args)
    _plot(samples, args, args.plot)
    if args.json:
        args.json.write_text(json.dumps({"summary": summary,
                                         "samples": [asdict(s) for s in samples]}))
    print(json.dumps(summary, indent=2))
    print(f"plot: {args.plot}")
    return 0 if summary["growth_last_fifth"] <= args.max_growth else 1


if __name__ == "__main__":
    sys.exit(main())
