"""What one task costs in Redis memory in each state (docs/reliability.md#retention).

    .venv/bin/python -m bench.record_cost [--tasks 20000]

For a few payload sizes, on a private Redis with its default settings and again with
``hash-max-listpack-value 1024``: enqueue ``--tasks`` tasks and read ``used_memory``
(queued), run them with an in-process worker (succeeded: a result as large as the
payload, the payload dropped; dead: the payload kept, with the error). Prints a table."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys

import redis.asyncio

import corral
from bench.tasks_soak import app
from corral.embedded import EmbeddedRedis
from corral.keys import DEFAULT_PREFIX, queue_keys
from corral_worker import Worker, WorkerSettings

KEYS = queue_keys("default", DEFAULT_PREFIX)


async def _used(conn: redis.asyncio.Redis) -> int:
    return int((await conn.info("memory"))["used_memory"])


async def _drain(url: str, last: corral.TaskHandle) -> None:
    worker = Worker(app, WorkerSettings(redis_url=url, metrics_port=None, concurrency=100,
                                        batch_size=100, worker_id="record-cost"))
    running = asyncio.create_task(worker.run(install_signal_handlers=False))
    with contextlib.suppress(corral.TaskFailed):
        await last.result(timeout=300)
    worker.stop()
    await running


async def _measure(count: int, note: str, listpack_value: int | None, task: str) -> list[int]:
    with EmbeddedRedis() as server:
        conn = redis.asyncio.Redis.from_url(server.url)
        if listpack_value:
            await conn.config_set("hash-max-listpack-value", listpack_value)
        base = await _used(conn)
        async with corral.Client.from_url(server.url) as client:
            handles = await client.enqueue_many(
                [corral.Enqueue(task, args=[i, note]) for i in range(count)])
            queued = await _used(conn)
            await _drain(server.url, handles[-1])
            await asyncio.sleep(0.5)
            done = await _used(conn)
        await conn.aclose()
    return [round((queued - base) / count), round((done - base) / count)]


async def main_async(count: int) -> None:
    print("| payload | hash-max-listpack-value | queued | succeeded (result as large) | dead |")
    print("|---:|---:|---:|---:|---:|")
    for listpack_value in (None, 1024):
        for size in (1, 64, 400):
            note = "x" * size
            payload = len(f'{{"args":[{count},"{note}"],"kwargs":{{}}}}')
            queued, succeeded = await _measure(count, note, listpack_value, "soak.echo")
            _, dead = await _measure(count, note, listpack_value, "soak.fail")
            print(f"| {payload} B | {listpack_value or '64 (default)'} | {queued} B | "
                  f"{succeeded} B | {dead} B |")


def main() -> int:
    logging.getLogger("corral_worker").setLevel(logging.ERROR)  # one warning per dead task
    parser = argparse.ArgumentParser(prog="bench.record_cost")
    parser.add_argument("--tasks", type=int, default=20_000)
    asyncio.run(main_async(parser.parse_args().tasks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
