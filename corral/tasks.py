"""Typed tasks: what ``@app.task`` returns. ``await resize.enqueue("img-1")`` is checked
against ``resize``'s signature, and its handle's ``result()`` has the function's return
type; ``resize("img-1")`` still calls the function itself.

Enqueue options cannot sit beside the function's own arguments in a typed signature
(PEP 612 allows no keyword parameters next to ``P.kwargs``), so they go through
``using``: ``await resize.using(priority=5, delay=10).enqueue("img-1")``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, overload

from corral.errors import ConfigError

if TYPE_CHECKING:
    from corral.app import App, TaskDef
    from corral.client import Client, TaskHandle

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class Task(Generic[P, R]):
    """A registered task. ``R`` is what calling the function returns (a coroutine for an
    ``async def``); the handle's result is the value the task produces."""

    def __init__(self, app: App, definition: TaskDef, fn: Callable[P, R]) -> None:
        self.app = app
        self.definition = definition
        self.fn = fn
        functools.update_wrapper(self, fn)

    @property
    def name(self) -> str:
        return self.definition.name

    def __repr__(self) -> str:
        return f"Task({self.name!r}, queue={self.definition.queue!r})"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def using(
        self,
        *,
        client: Client | None = None,
        queue: str | None = None,
        priority: int = 0,
        delay: float = 0.0,
        key: str | None = None,
    ) -> BoundTask[P, R]:
        """This task with enqueue options: another client, queue, priority (0-9, 9 first),
        delay in seconds or de-duplication key."""
        return BoundTask(self, client, queue, priority, delay, key)

    @overload
    async def enqueue(
        self: Task[P, Coroutine[Any, Any, T]], *args: P.args, **kwargs: P.kwargs
    ) -> TaskHandle[T]: ...

    @overload
    async def enqueue(self: Task[P, T], *args: P.args, **kwargs: P.kwargs) -> TaskHandle[T]: ...

    async def enqueue(self, *args: Any, **kwargs: Any) -> TaskHandle[Any]:
        """Enqueue a call with the task's own options, through the App's client."""
        return await self.using().enqueue(*args, **kwargs)


@dataclass(frozen=True, slots=True)
class BoundTask(Generic[P, R]):
    """A task with enqueue options, from ``Task.using``."""

    task: Task[P, R]
    client: Client | None
    queue: str | None
    priority: int
    delay: float
    key: str | None

    @overload
    async def enqueue(
        self: BoundTask[P, Coroutine[Any, Any, T]], *args: P.args, **kwargs: P.kwargs
    ) -> TaskHandle[T]: ...

    @overload
    async def enqueue(
        self: BoundTask[P, T], *args: P.args, **kwargs: P.kwargs
    ) -> TaskHandle[T]: ...

    async def enqueue(self, *args: Any, **kwargs: Any) -> TaskHandle[Any]:
        client = self.client or self.task.app.client
        if client is None:
            raise ConfigError(
                f"task {self.task.name!r} has no client to enqueue with: create "
                "corral.Client(..., app=app) first, or pass client= to using()"
            )
        return await client.enqueue(self.task.name, list(args), kwargs, queue=self.queue,
                                    priority=self.priority, delay=self.delay, key=self.key)
