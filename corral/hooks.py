"""Lifecycle hooks and middleware, declared on the App and run by the worker.

``App(on_startup=[...], on_shutdown=[...])`` run once per worker process, before the
first claim and after the drain (for shared resources such as a database pool; keep
them in ``app.state``). Middleware wraps each attempt, in the style of Dramatiq's and
taskiq's: ``before`` in the order given, ``after`` in reverse, with the attempt's
result or exception.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from corral.context import TaskContext

Hook = Callable[[], Awaitable[None]]


class Middleware:
    """Subclass and override what you need; both methods default to doing nothing.
    An exception from ``before`` fails the attempt (as the task raising would); one
    from ``after`` is logged and does not change the attempt's outcome."""

    async def before(self, task: TaskContext) -> None:
        return None

    async def after(self, task: TaskContext, result: Any, error: BaseException | None) -> None:
        return None
