"""``corral demo``: a worker and a sample workload on a private Redis/Valkey,
with live progress and the worker's gauges."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request

from corral.app import App
from corral.client import Client, Enqueue
from corral.connection import connect
from corral.depths import read_queue_depths
from corral.embedded import EmbeddedRedis, free_port

app = App()


@app.task(name="demo.noop", queue="default")
async def noop(n: int) -> int:
    return n


@app.task(name="demo.io", queue="default", timeout=5.0)
async def io(ms: int) -> int:
    await asyncio.sleep(ms / 1000)
    return ms


@app.task(name="demo.flaky", queue="critical", retries=2, retry_backoff=0.2)
async def flaky(n: int) -> int:
    if random.random() < 0.3:
        raise RuntimeError(f"flaky task {n} failed")
    return n


def run_demo(redis_url: str | None, tasks: int) -> int:
    server = None if redis_url else EmbeddedRedis().start()
    url = redis_url or server.url  # type: ignore[union-attr]
    print(f"redis: {url}" + ("" if redis_url else f" (private {os.path.basename(server.binary)})"))  # type: ignore[union-attr]
    port = free_port()
    worker = subprocess.Popen(
        [sys.executable, "-m", "corral", "--redis-url", url, "worker", "corral_worker.demo:app",
         "--queues", "critical=3,default=1", "--concurrency", "100", "--batch-size", "100",
         "--metrics-port", str(port), "--worker-id", "demo-worker", "--log-level", "ERROR"],
    )
    try:
        return asyncio.run(_workload(url, tasks, port))
    finally:
        worker.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.wait(30)
        if worker.poll() is None:
            worker.kill()
        if server is not None:
            server.close()


async def _workload(url: str, tasks: int, port: int) -> int:
    calls = []
    for n in range(tasks):
        kind = n % 10
        if kind < 7:
            calls.append(Enqueue("demo.noop", [n]))
        elif kind < 9:
            calls.append(Enqueue("demo.io", [random.randint(1, 20)], priority=5))
        else:
            calls.append(Enqueue("demo.flaky", [n], queue="critical", priority=9))
    redis = connect(url)
    async with Client(connect(url)) as client:
        started = time.monotonic()
        handles = await client.enqueue_many(calls)
        enqueue_s = time.monotonic() - started
        print(f"enqueued {len(handles)} tasks in {enqueue_s:.2f} s "
              f"({len(handles) / enqueue_s:,.0f}/s)")
        try:
            await _progress(redis, port, started)
        finally:
            await redis.aclose()
        sample = handles[-1]
        print(f"last task {sample.id}: {await sample.status()}")
    return 0


async def _progress(redis: object, port: int, started: float) -> None:
    queues = ["critical", "default"]
    while True:
        await asyncio.sleep(0.5)
        depths = await read_queue_depths(redis, queues)  # type: ignore[arg-type]
        gauges = _scrape(port)
        waiting = sum(d.backlog + d.scheduled + d.in_flight for d in depths.values())
        dead = sum(d.dead for d in depths.values())
        done = gauges.get("succeeded", 0.0)
        elapsed = time.monotonic() - started
        print(
            f"{elapsed:6.1f}s  succeeded={done:>8.0f}  waiting={waiting:>7}  "
            f"active={gauges.get('active', 0):>4.0f}  "
            f"prefetched={gauges.get('prefetched', 0):>4.0f}  "
            f"retried={gauges.get('retried', 0):>5.0f}  dead={dead:>4}  "
            f"loop_lag={gauges.get('lag', 0) * 1000:5.1f}ms",
            flush=True,
        )
        if waiting == 0:
            print(f"done in {elapsed:.1f} s; metrics were at http://127.0.0.1:{port}/metrics")
            return


def _scrape(port: int) -> dict[str, float]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return {}
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        key = None
        if name.startswith("corral_active_tasks"):
            key = "active"
        elif name.startswith("corral_prefetched_tasks"):
            key = "prefetched"
        elif name.startswith("corral_event_loop_lag_seconds"):
            key = "lag"
        elif name.startswith("corral_tasks_total"):
            key = name.split('outcome="')[1].split('"')[0]
        if key:
            totals[key] = totals.get(key, 0.0) + float(value)
    return totals
