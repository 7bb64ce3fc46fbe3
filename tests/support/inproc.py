"""A worker running inside the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

from corral.app import App
from corral_worker import Worker, WorkerSettings


@contextlib.asynccontextmanager
async def running_worker(
    redis_url: str, app: App | None = None, **settings: Any
) -> AsyncIterator[Worker]:
    if app is None:
        from tests.apps.basic import app as basic_app

        app = basic_app
    os.environ["CORRAL_TEST_REDIS_URL"] = redis_url
    settings.setdefault("metrics_port", None)
    settings.setdefault("worker_id", "in-process")
    worker = Worker(app, WorkerSettings(redis_url=redis_url, **settings))
    task = asyncio.create_task(worker.run(install_signal_handlers=False))
    started = asyncio.create_task(worker.started.wait())
    await asyncio.wait([task, started], return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        started.cancel()
        task.result()
    try:
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, 60)
