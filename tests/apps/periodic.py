"""An app with a periodic task (imported by worker subprocesses too)."""

from __future__ import annotations

import os
from datetime import timedelta

import redis

from corral import App, current_task

app = App(result_ttl_s=600)

_sync_redis: redis.Redis | None = None


def _redis() -> redis.Redis:
    global _sync_redis
    if _sync_redis is None:
        _sync_redis = redis.Redis.from_url(os.environ["CORRAL_TEST_REDIS_URL"])
    return _sync_redis


# catch_up="all": a tick found late on a loaded machine still runs, so the tests can
# count every tick.
@app.periodic(every=timedelta(seconds=1), name="every-second", args=["tick"],
              catch_up="all")
async def every_second(tag: str) -> str:
    """Appends its own task id to ``test:periodic`` each time it runs."""
    _redis().rpush("test:periodic", current_task().id)
    return tag
