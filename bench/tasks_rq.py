"""RQ's benchmark jobs and producer."""

from __future__ import annotations

import time
from collections.abc import Sequence

from redis import Redis
from rq import Queue

from bench import record


def noop(t: float) -> None:
    record.write(t, time.monotonic())


def io(t: float) -> None:
    started = time.monotonic()
    time.sleep(0.01)
    record.write(t, started)


class Producer:
    is_async = False
    bulk_api: str | None = "Queue.enqueue_many"

    def __init__(self, url: str) -> None:
        self.redis = Redis.from_url(url)
        self.queue = Queue("default", connection=self.redis)
        self.functions = {"noop": noop, "io": io}

    def start(self) -> None:
        self.redis.ping()

    def send(self, kind: str, t: float) -> None:
        self.queue.enqueue(self.functions[kind], t)

    def send_many(self, kind: str, ts: Sequence[float]) -> None:
        fn = self.functions[kind]
        self.queue.enqueue_many([Queue.prepare_data(fn, (t,)) for t in ts])

    def close(self) -> None:
        self.redis.close()
