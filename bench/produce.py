"""The producer side of one benchmark step, run in the system's own venv:

    python -m bench.produce SYSTEM fill --kind noop --n 20000
    python -m bench.produce SYSTEM enqueue --single 2000 --bulk 20000 --max-s 10
    python -m bench.produce SYSTEM paced --rate 500 --duration-s 20 --warmup 10

It prints one JSON object. ``$BENCH_REDIS_URL`` names the Redis, and
``$BENCH_RECORD_FILE`` the file the tasks write to (``paced`` watches it for the
warm-up tasks). Only the standard library and the system under test are imported."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import time
from typing import Any

from bench import record
from bench.stats import percentile

FILL_WINDOW = 100  # concurrent single calls when a system has no bulk API
BULK_CHUNK = 5_000  # tasks per bulk call while filling
IDLE_BEFORE_LOAD_S = 1.0


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.produce")
    parser.add_argument("system")
    sub = parser.add_subparsers(dest="action", required=True)
    fill = sub.add_parser("fill")
    fill.add_argument("--kind", choices=("noop", "io"), default="noop")
    fill.add_argument("--n", type=int, required=True)
    enqueue = sub.add_parser("enqueue")
    enqueue.add_argument("--single", type=int, required=True)
    enqueue.add_argument("--bulk", type=int, required=True)
    enqueue.add_argument("--max-s", type=float, default=10.0)
    paced = sub.add_parser("paced")
    paced.add_argument("--rate", type=float, required=True)
    paced.add_argument("--duration-s", type=float, required=True)
    paced.add_argument("--warmup", type=int, default=10)
    paced.add_argument("--warmup-timeout-s", type=float, default=60.0)
    return parser.parse_args()


def main() -> None:
    args = _parse()
    module = importlib.import_module(f"bench.tasks_{args.system}")
    producer = module.Producer(os.environ["BENCH_REDIS_URL"])
    if producer.is_async:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            result = runner.run(_run_async(producer, args))
    else:
        result = _run_sync(producer, args)
    result["bulk_api"] = producer.bulk_api
    print(json.dumps(result), flush=True)


def _loop_factory() -> Any:
    """uvloop for every asyncio producer (each asyncio system's venv has it)."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


# -- sync clients (Celery, RQ, Dramatiq) ------------------------------------------------


def _run_sync(producer: Any, args: argparse.Namespace) -> dict[str, Any]:
    producer.start()
    try:
        if args.action == "fill":
            return _fill_sync(producer, args.kind, args.n)
        if args.action == "enqueue":
            return _enqueue_sync(producer, args.single, args.bulk, args.max_s)
        _await_warmup_sync(producer, args.warmup, args.warmup_timeout_s)
        return _paced_sync(producer, args.rate, args.duration_s)
    finally:
        producer.close()


def _fill_sync(producer: Any, kind: str, n: int) -> dict[str, Any]:
    started = time.monotonic()
    if producer.bulk_api:
        for i in range(0, n, BULK_CHUNK):
            producer.send_many(kind, [0.0] * min(BULK_CHUNK, n - i))
    else:
        for _ in range(n):
            producer.send(kind, 0.0)
    return {"n": n, "seconds": time.monotonic() - started}


def _enqueue_sync(producer: Any, single: int, bulk: int, max_s: float) -> dict[str, Any]:
    started = time.monotonic()
    sent = 0
    while sent < single and time.monotonic() - started < max_s:
        producer.send("noop", 0.0)
        sent += 1
    result: dict[str, Any] = {"single_n": sent, "single_s": time.monotonic() - started}
    if producer.bulk_api:
        started = time.monotonic()
        producer.send_many("noop", [0.0] * bulk)
        result.update(bulk_n=bulk, bulk_s=time.monotonic() - started)
    return result


def _await_warmup_sync(producer: Any, warmup: int, timeout_s: float) -> None:
    path = os.environ["BENCH_RECORD_FILE"]
    deadline = time.monotonic() + timeout_s
    for _ in range(warmup):
        producer.send("noop", record.WARMUP)
        time.sleep(0.02)
    while record.count(path) < warmup:
        if time.monotonic() > deadline:
            raise SystemExit(f"warm-up tasks did not run within {timeout_s} s")
        time.sleep(0.02)
    time.sleep(IDLE_BEFORE_LOAD_S)


def _paced_sync(producer: Any, rate: float, duration_s: float) -> dict[str, Any]:
    n = int(rate * duration_s)
    interval_s = 1.0 / rate
    pace = _Pace()
    started = time.monotonic()
    for k in range(n):
        due = started + k * interval_s
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        sent_at = time.monotonic()
        producer.send("noop", sent_at)
        pace.sent(due, sent_at, time.monotonic())
    return pace.result(n, rate, time.monotonic() - started)


# -- asyncio clients (Corral, arq, SAQ, taskiq, streaQ) ------------------------------------


async def _run_async(producer: Any, args: argparse.Namespace) -> dict[str, Any]:
    await producer.start()
    try:
        if args.action == "fill":
            return await _fill_async(producer, args.kind, args.n)
        if args.action == "enqueue":
            return await _enqueue_async(producer, args.single, args.bulk, args.max_s)
        await _await_warmup_async(producer, args.warmup, args.warmup_timeout_s)
        return await _paced_async(producer, args.rate, args.duration_s)
    finally:
        await producer.close()


async def _fill_async(producer: Any, kind: str, n: int) -> dict[str, Any]:
    started = time.monotonic()
    if producer.bulk_api:
        for i in range(0, n, BULK_CHUNK):
            await producer.send_many(kind, [0.0] * min(BULK_CHUNK, n - i))
    else:
        for i in range(0, n, FILL_WINDOW):
            count = min(FILL_WINDOW, n - i)
            await asyncio.gather(*(producer.send(kind, 0.0) for _ in range(count)))
    return {"n": n, "seconds": time.monotonic() - started}


async def _enqueue_async(producer: Any, single: int, bulk: int, max_s: float) -> dict[str, Any]:
    started = time.monotonic()
    sent = 0
    while sent < single and time.monotonic() - started < max_s:
        await producer.send("noop", 0.0)
        sent += 1
    result: dict[str, Any] = {"single_n": sent, "single_s": time.monotonic() - started}
    if producer.bulk_api:
        started = time.monotonic()
        await producer.send_many("noop", [0.0] * bulk)
        result.update(bulk_n=bulk, bulk_s=time.monotonic() - started)
    return result


async def _await_warmup_async(producer: Any, warmup: int, timeout_s: float) -> None:
    path = os.environ["BENCH_RECORD_FILE"]
    deadline = time.monotonic() + timeout_s
    for _ in range(warmup):
        await producer.send("noop", record.WARMUP)
        await asyncio.sleep(0.02)
    while record.count(path) < warmup:
        if time.monotonic() > deadline:
            raise SystemExit(f"warm-up tasks did not run within {timeout_s} s")
        await asyncio.sleep(0.02)
    await asyncio.sleep(IDLE_BEFORE_LOAD_S)


async def _paced_async(producer: Any, rate: float, duration_s: float) -> dict[str, Any]:
    n = int(rate * duration_s)
    interval_s = 1.0 / rate
    pace = _Pace()
    started = time.monotonic()
    for k in range(n):
        due = started + k * interval_s
        now = time.monotonic()
        if due > now:
            await asyncio.sleep(due - now)
        sent_at = time.monotonic()
        await producer.send("noop", sent_at)
        pace.sent(due, sent_at, time.monotonic())
    return pace.result(n, rate, time.monotonic() - started)


class _Pace:
    """How the fixed schedule went: how late each send was against its due time
    (machine and event-loop scheduling noise), and how long each enqueue call took."""

    def __init__(self) -> None:
        self.late_ms: list[float] = []
        self.call_ms: list[float] = []

    def sent(self, due: float, sent_at: float, returned_at: float) -> None:
        self.late_ms.append(max(0.0, sent_at - due) * 1000)
        self.call_ms.append((returned_at - sent_at) * 1000)

    def result(self, n: int, rate: float, elapsed_s: float) -> dict[str, Any]:
        return {
            "n": n,
            "offered_per_s": rate,
            "achieved_per_s": n / elapsed_s if elapsed_s > 0 else 0.0,
            "send_late_p99_ms": percentile(self.late_ms, 99),
            "send_late_max_ms": max(self.late_ms),
            "enqueue_call_p50_ms": percentile(self.call_ms, 50),
            "enqueue_call_p99_ms": percentile(self.call_ms, 99),
            "enqueue_call_max_ms": max(self.call_ms),
        }


if __name__ == "__main__":
    main()
