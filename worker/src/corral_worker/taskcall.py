"""One attempt of a task as user code sees it: the task context set, the App's
middleware around it, a consumer span when tracing, and a plain function on a thread
with the context copied there."""

from __future__ import annotations

import contextvars
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, cast

from corral import tracing
from corral.app import App, TaskDef
from corral.context import TaskContext
from corral.serialization import Call

log = logging.getLogger("corral.worker")

RunInThread = Callable[[Callable[[], Any]], Awaitable[Any]]


async def call_wrapped(app: App, task_def: TaskDef, context: TaskContext, call: Call,
                       run_in_thread: RunInThread) -> Any:
    """The attempt with what the App puts around it: a consumer span when tracing, then
    the middleware."""
    if tracing.active():
        with tracing.consuming(context.queue, context.name, context.id, context.attempt,
                               call.trace):
            return await _wrapped(app, task_def, context, call, run_in_thread)
    return await _wrapped(app, task_def, context, call, run_in_thread)


async def _wrapped(app: App, task_def: TaskDef, context: TaskContext, call: Call,
                   run_in_thread: RunInThread) -> Any:
    for layer in app.middleware:
        await layer.before(context)
    try:
        result = await bare(task_def, call, run_in_thread)
    except BaseException as exc:
        await _after(app, context, None, exc)
        raise
    await _after(app, context, result, None)
    return result


def bare(task_def: TaskDef, call: Call, run_in_thread: RunInThread) -> Awaitable[Any]:
    """The task itself: an ``async def`` awaited, a plain function on a thread (which
    sees ``current_task()`` too)."""
    if task_def.is_async:
        return cast(Awaitable[Any], task_def.fn(*call.args, **call.kwargs))
    run = contextvars.copy_context().run
    return run_in_thread(functools.partial(run, task_def.fn, *call.args, **call.kwargs))


async def _after(app: App, context: TaskContext, result: Any,
                 error: BaseException | None) -> None:
    for layer in reversed(app.middleware):
        try:
            await layer.after(context, result, error)
        except Exception:
            log.exception("middleware %r failed after task %s", layer, context.id,
                          extra={"task_id": context.id})
