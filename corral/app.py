"""The task registry: ``corral.App`` and its ``@app.task`` decorator."""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

from corral.errors import ConfigError
from corral.hooks import Hook, Middleware
from corral.keys import validate_queue_name
from corral.serialization import DEFAULT_MAX_PAYLOAD_BYTES
from corral.tasks import Task

if TYPE_CHECKING:
    from corral.client import Client

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_RESULT_TTL_S = 86_400.0
DEFAULT_TIMEOUT_S = 300.0
_TASK_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:<>-]{0,199}$")


@dataclass(frozen=True, slots=True)
class TaskDef:
    """How one task runs. ``timeout_s=None`` means no time limit."""

    name: str
    fn: Callable[..., Any]
    queue: str
    timeout_s: float | None
    retries: int
    retry_backoff_s: float
    retry_backoff_max_s: float
    result_ttl_s: float
    dead_letter: bool
    is_async: bool


class App:
    """A set of tasks, shared by the code that enqueues them and the worker that runs them."""

    def __init__(
        self,
        *,
        result_ttl_s: float = DEFAULT_RESULT_TTL_S,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        on_startup: Sequence[Hook] = (),
        on_shutdown: Sequence[Hook] = (),
        middleware: Sequence[Middleware] = (),
    ) -> None:
        if result_ttl_s <= 0:
            raise ConfigError("result_ttl_s must be positive")
        for hook in (*on_startup, *on_shutdown):
            if not inspect.iscoroutinefunction(hook):
                raise ConfigError(f"lifecycle hook {hook!r} must be an async function")
        for layer in middleware:
            if not isinstance(layer, Middleware):
                raise ConfigError(f"middleware {layer!r} must be a corral.Middleware")
        self.result_ttl_s = result_ttl_s
        self.max_payload_bytes = max_payload_bytes
        self.on_startup = tuple(on_startup)
        self.on_shutdown = tuple(on_shutdown)
        self.middleware = tuple(middleware)
        # Resources the startup hooks make for the tasks to share (a database pool...).
        self.state: dict[str, Any] = {}
        self.tasks: dict[str, TaskDef] = {}
        # The client that typed enqueue (``await task.enqueue(...)``) uses: the first
        # open Client made with ``app=`` this App.
        self.client: Client | None = None

    @overload
    def task(self, fn: Callable[P, R], /) -> Task[P, R]: ...

    @overload
    def task(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        queue: str = "default",
        timeout: float | None = DEFAULT_TIMEOUT_S,
        retries: int = 0,
        retry_backoff: float = 1.0,
        retry_backoff_max: float = 300.0,
        result_ttl: float | None = None,
        dead_letter: bool = True,
    ) -> Callable[[Callable[P, R]], Task[P, R]]: ...

    def task(
        self,
        fn: Callable[P, R] | None = None,
        /,
        *,
        name: str | None = None,
        queue: str = "default",
        timeout: float | None = DEFAULT_TIMEOUT_S,
        retries: int = 0,
        retry_backoff: float = 1.0,
        retry_backoff_max: float = 300.0,
        result_ttl: float | None = None,
        dead_letter: bool = True,
    ) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
        """Register a function as a task. ``retries`` failed attempts are retried with
        exponential backoff (``retry_backoff`` seconds doubling up to ``retry_backoff_max``,
        with jitter); after the last one the task goes to the dead-letter queue, or ends
        ``failed`` when ``dead_letter=False``. Plain ``def`` functions run in a thread pool.
        Returns a :class:`corral.tasks.Task`: call it as the function, or
        ``await it.enqueue(...)`` with arguments checked against its signature."""

        def register(func: Callable[P, R]) -> Task[P, R]:
            task_name = name or f"{func.__module__}.{func.__qualname__}"
            if not _TASK_NAME.match(task_name):
                raise ConfigError(f"invalid task name {task_name!r}")
            if task_name in self.tasks:
                raise ConfigError(f"task {task_name!r} is registered twice")
            if timeout is not None and timeout <= 0:
                raise ConfigError(f"task {task_name!r}: timeout must be positive or None")
            if retries < 0:
                raise ConfigError(f"task {task_name!r}: retries must be >= 0")
            definition = self.tasks[task_name] = TaskDef(
                name=task_name,
                fn=func,
                queue=validate_queue_name(queue),
                timeout_s=timeout,
                retries=retries,
                retry_backoff_s=retry_backoff,
                retry_backoff_max_s=retry_backoff_max,
                result_ttl_s=result_ttl or self.result_ttl_s,
                dead_letter=dead_letter,
                is_async=inspect.iscoroutinefunction(func),
            )
            return Task(self, definition, func)

        return register(fn) if fn is not None else register


def load_app(path: str) -> App:
    """The App named by ``module:attr`` (the module is imported; nothing else is)."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"app must be given as MODULE:ATTR, not {path!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import {module_name!r}: {exc}") from None
    if not hasattr(module, attr):
        raise ConfigError(f"module {module_name!r} has no attribute {attr!r}")
    app = getattr(module, attr)
    if not isinstance(app, App):
        raise ConfigError(f"{path!r} is not a corral.App (got {type(app).__name__})")
    return app
