"""Tasks that look at their own context, report progress, use a resource made by a
startup hook, and run under recording middleware (tests/integration/test_task_context.py)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import corral

events: list[str] = []


async def open_pool() -> None:
    events.append("startup")
    app.state["pool"] = "the-pool"


async def close_pool() -> None:
    events.append("shutdown")
    app.state.pop("pool")


class Recorder(corral.Middleware):
    def __init__(self, name: str) -> None:
        self.name = name

    async def before(self, task: corral.TaskContext) -> None:
        events.append(f"{self.name}.before:{task.name}")

    async def after(self, task: corral.TaskContext, result: Any,
                    error: BaseException | None) -> None:
        outcome = type(error).__name__ if error else repr(result)
        events.append(f"{self.name}.after:{task.name}:{outcome}")


class Broken(corral.Middleware):
    async def after(self, task: corral.TaskContext, result: Any,
                    error: BaseException | None) -> None:
        raise RuntimeError("middleware bug")


app = corral.App(on_startup=[open_pool], on_shutdown=[close_pool],
                 middleware=[Recorder("outer"), Recorder("inner"), Broken()])


def _describe() -> dict[str, Any]:
    ctx = corral.current_task()
    deadline = ctx.deadline
    return {"id": ctx.id, "name": ctx.name, "queue": ctx.queue, "attempt": ctx.attempt,
            "enqueued_at": ctx.enqueued_at.timestamp(),
            "deadline_in_s": None if deadline is None else
            deadline.timestamp() - time.time(), "pool": app.state.get("pool")}


@app.task(name="ctx.describe", timeout=30.0)
async def describe() -> dict[str, Any]:
    return _describe()


@app.task(name="ctx.describe_sync", timeout=None)
def describe_sync() -> dict[str, Any]:
    return _describe()


@app.task(name="ctx.flaky", retries=2, retry_backoff=0.05, retry_backoff_max=0.05)
async def flaky() -> int:
    attempt = corral.current_task().attempt
    if attempt < 3:
        raise RuntimeError(f"attempt {attempt} fails")
    return attempt


@app.task(name="ctx.progress", timeout=60.0)
async def progress(key: str) -> str:
    ctx = corral.current_task()
    ctx.set_progress(0.25, "a quarter")
    # Wait until the test has seen the progress (it pushes to this list).
    redis = corral.Client.from_url(app.state["url"]).redis
    try:
        await redis.blpop([key], timeout=30)
    finally:
        await redis.aclose()
    ctx.set_progress(1.0, "done")
    return "finished"


@app.task(name="ctx.progress_sync", timeout=60.0)
def progress_sync() -> str:
    corral.current_task().set_progress(0.5, "half, from a thread")
    time.sleep(1.0)
    return "ok"


@app.task(name="ctx.fails")
async def fails() -> None:
    await asyncio.sleep(0)
    raise ValueError("no")
