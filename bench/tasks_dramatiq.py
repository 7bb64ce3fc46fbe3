"""Dramatiq's benchmark actors and producer. Worker: ``dramatiq bench.tasks_dramatiq``."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from bench import record

broker = RedisBroker(url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
dramatiq.set_broker(broker)


@dramatiq.actor
def noop(t: float) -> None:
    record.write(t, time.monotonic())


@dramatiq.actor
def io(t: float) -> None:
    started = time.monotonic()
    time.sleep(0.01)
    record.write(t, started)


class Producer:
    is_async = False
    bulk_api: str | None = None  # group().run() sends one message at a time

    def __init__(self, url: str) -> None:
        self.actors = {"noop": noop, "io": io}

    def start(self) -> None:
        broker.client.ping()

    def send(self, kind: str, t: float) -> None:
        self.actors[kind].send(t)

    def send_many(self, kind: str, ts: Sequence[float]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        broker.close()
