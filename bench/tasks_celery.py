"""Celery's benchmark tasks and producer (Redis broker, no result backend)."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from celery import Celery

from bench import record

app = Celery("bench", broker=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
# Only silences Celery 5's start-up deprecation warning; it is the default behaviour.
app.conf.broker_connection_retry_on_startup = True


@app.task(name="noop")
def noop(t: float) -> None:
    record.write(t, time.monotonic())


@app.task(name="io")
def io(t: float) -> None:
    started = time.monotonic()
    time.sleep(0.01)  # cooperative under the gevent pool, which patches time.sleep
    record.write(t, started)


class Producer:
    is_async = False
    bulk_api: str | None = None  # group() sends one message per task; no pipelined API

    def __init__(self, url: str) -> None:
        app.conf.broker_url = url
        self.tasks = {"noop": noop, "io": io}

    def start(self) -> None:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=3)

    def send(self, kind: str, t: float) -> None:
        self.tasks[kind].delay(t)

    def send_many(self, kind: str, ts: Sequence[float]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        app.close()
