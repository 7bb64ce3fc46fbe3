"""The task registry: ``corral.App`` and its ``@app.task`` decorator."""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal, ParamSpec, TypeVar, overload

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from corral import periodic
from corral.errors import ConfigError, InvalidTask
from corral.hooks import Hook, Middleware
from corral.keys import DEFAULT_PREFIX, validate_prefix, validate_queue_name
from corral.limits import LimitKey, Limits, parse_rate
from corral.retention import DEFAULT_DEAD_TTL_S, DEFAULT_MAX_DEAD, DEFAULT_RESULT_TTL_S
from corral.serialization import DEFAULT_MAX_PAYLOAD_BYTES, encode_payload
from corral.tasks import Task

if TYPE_CHECKING:
    from corral.client import Client

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_TIMEOUT_S = 300.0
_TASK_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:<>-]{0,199}$")

# Option types: strict (no True for 1, no "5" for 5), finite, with their bounds.
_Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]
_PositiveSeconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]
_Count = Annotated[int, Field(ge=0)]
_PositiveCount = Annotated[int, Field(gt=0)]


class _Options(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class _AppOptions(_Options):
    result_ttl_s: _Seconds
    dead_ttl_s: _PositiveSeconds
    max_dead: _PositiveCount
    max_payload_bytes: _PositiveCount


class _TaskOptions(_Options):
    """The options of ``@app.task``, under the names the decorator takes."""

    queue: str
    timeout: _PositiveSeconds | None
    retries: _Count
    retry_backoff: _Seconds
    retry_backoff_max: _Seconds
    result_ttl: _Seconds | None
    dead_ttl: _PositiveSeconds | None
    dead_letter: bool
    rate_limit: str | None
    concurrency_limit: _PositiveCount | None
    limit_key: LimitKey | None

    @field_validator("rate_limit")
    @classmethod
    def _rate(cls, value: str | None) -> str | None:
        if value is not None:
            parse_rate(value)  # a ValueError here is a validation error
        return value


class _PeriodicOptions(_Options):
    """The options of ``@app.periodic``."""

    every: timedelta | _PositiveSeconds | None
    cron: Annotated[str, Field(min_length=1)] | None
    timezone: Annotated[str, Field(min_length=1)] | None
    queue: str | None
    priority: Annotated[int, Field(ge=0, le=9)]
    args: list[Any] | tuple[Any, ...]
    kwargs: dict[str, Any]
    catch_up: Literal["latest", "all", "none"]
    max_catch_up: Annotated[int, Field(ge=1, le=periodic.MAX_CATCH_UP)]


# Ticks come about 1 s late at most: a shorter interval would only pile them up.
_MIN_EVERY_MS = 1000


def _cadence(where: str, options: _PeriodicOptions) -> periodic.Cadence:
    """The schedule's cadence, or a ConfigError saying why there is none."""
    if (options.every is None) == (options.cron is None):
        raise ConfigError(f"{where}: give exactly one of every= and cron=")
    if options.every is not None:
        if options.timezone is not None:
            raise ConfigError(f"{where}: timezone applies to cron= only (every= counts "
                              "from the Unix epoch)")
        interval_ms = periodic.interval_ms(options.every)
        if interval_ms < _MIN_EVERY_MS:
            raise ConfigError(f"{where}: every must be at least 1 second "
                              f"(got {options.every!r})")
        return periodic.Every(interval_ms)
    assert options.cron is not None
    timezone = options.timezone or "UTC"
    problem = periodic.check_cron(options.cron, timezone)
    if problem:
        raise ConfigError(f"{where}: {problem}")
    return periodic.Cron(options.cron, timezone)


def _validated(model: type[_Options], where: str, options: dict[str, Any]) -> Any:
    """``model(**options)``, or one ConfigError line naming the first bad option."""
    try:
        return model(**options)
    except ValidationError as exc:
        error = exc.errors()[0]
        option = ".".join(str(part) for part in error["loc"][:1])
        raise ConfigError(
            f"{where}: {option}: {error['msg'].lower()} (got {error['input']!r})"
        ) from None


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
    result_ttl_s: float  # 0: no result is kept
    dead_ttl_s: float
    dead_letter: bool
    is_async: bool
    limits: Limits | None = None  # rate and concurrency limits (corral.limits)


class App:
    """A set of tasks, shared by the code that enqueues them and the worker that runs them."""

    def __init__(
        self,
        *,
        result_ttl_s: float = DEFAULT_RESULT_TTL_S,
        dead_ttl_s: float = DEFAULT_DEAD_TTL_S,
        max_dead: int = DEFAULT_MAX_DEAD,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        on_startup: Sequence[Hook] = (),
        on_shutdown: Sequence[Hook] = (),
        middleware: Sequence[Middleware] = (),
        prefix: str | None = None,
    ) -> None:
        """Defaults for every task: ``result_ttl_s`` how long a finished task's record
        (with its result) is kept, 0 for not at all; ``dead_ttl_s`` how long a dead one
        is; ``max_dead`` the most dead tasks one queue keeps (see corral.retention).
        ``prefix`` starts every Redis key and channel of the app (default ``corral``):
        apps with different prefixes share a Redis, even queue names, without meeting."""
        options = _validated(_AppOptions, "App", {
            "result_ttl_s": result_ttl_s, "dead_ttl_s": dead_ttl_s, "max_dead": max_dead,
            "max_payload_bytes": max_payload_bytes,
        })
        self.result_ttl_s: float = options.result_ttl_s
        self.dead_ttl_s: float = options.dead_ttl_s
        self.max_dead: int = options.max_dead
        self.max_payload_bytes: int = options.max_payload_bytes
        try:
            self.prefix: str = DEFAULT_PREFIX if prefix is None else validate_prefix(prefix)
        except ValueError as exc:
            raise ConfigError(f"App: prefix: {exc}") from None
        # Whether the code chose the prefix: then a different --prefix is a mistake.
        self.prefix_is_set = prefix is not None
        for hook in (*on_startup, *on_shutdown):
            if not inspect.iscoroutinefunction(hook):
                raise ConfigError(f"lifecycle hook {hook!r} must be an async function")
        for layer in middleware:
            if not isinstance(layer, Middleware):
                raise ConfigError(f"middleware {layer!r} must be a corral.Middleware")
        self.on_startup = tuple(on_startup)
        self.on_shutdown = tuple(on_shutdown)
        self.middleware = tuple(middleware)
        # Resources the startup hooks make for the tasks to share (a database pool...).
        self.state: dict[str, Any] = {}
        self.tasks: dict[str, TaskDef] = {}
        self.schedules: dict[str, periodic.Schedule] = {}
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
        dead_ttl: float | None = None,
        dead_letter: bool = True,
        rate_limit: str | None = None,
        concurrency_limit: int | None = None,
        limit_key: LimitKey | None = None,
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
        dead_ttl: float | None = None,
        dead_letter: bool = True,
        rate_limit: str | None = None,
        concurrency_limit: int | None = None,
        limit_key: LimitKey | None = None,
    ) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
        """Register a function as a task. ``retries`` failed attempts are retried with
        exponential backoff (``retry_backoff`` seconds doubling up to ``retry_backoff_max``,
        with jitter); after the last one the task goes to the dead-letter queue (kept
        ``dead_ttl`` seconds), or ends ``failed`` when ``dead_letter=False``. A finished
        task's result is kept ``result_ttl`` seconds (0: not at all; None: the app's).
        ``rate_limit`` ("100/s", "30/m", "500/h") and ``concurrency_limit`` (tasks
        running at once) hold across every worker; with ``limit_key`` (called with the
        task's arguments at enqueue) each key value has its own (see corral.limits).
        Plain ``def`` functions run in a thread pool. Bad options raise ConfigError.
        Returns a :class:`corral.tasks.Task`: call it as the function, or
        ``await it.enqueue(...)`` with arguments checked against its signature."""
        options = {
            "queue": queue, "timeout": timeout, "retries": retries,
            "retry_backoff": retry_backoff, "retry_backoff_max": retry_backoff_max,
            "result_ttl": result_ttl, "dead_ttl": dead_ttl, "dead_letter": dead_letter,
            "rate_limit": rate_limit, "concurrency_limit": concurrency_limit,
            "limit_key": limit_key,
        }

        def register(func: Callable[P, R]) -> Task[P, R]:
            task_name = name or f"{func.__module__}.{func.__qualname__}"
            if not isinstance(task_name, str) or not _TASK_NAME.match(task_name):
                raise ConfigError(f"invalid task name {task_name!r}")
            if task_name in self.tasks:
                raise ConfigError(f"task {task_name!r} is registered twice")
            where = f"task {task_name!r}"
            checked: _TaskOptions = _validated(_TaskOptions, where, options)
            try:
                task_queue = validate_queue_name(checked.queue)
            except ValueError as exc:
                raise ConfigError(f"{where}: queue: {exc}") from None
            if checked.retry_backoff_max < checked.retry_backoff:
                raise ConfigError(f"{where}: retry_backoff_max must be >= retry_backoff "
                                  f"(got {checked.retry_backoff_max!r})")
            definition = self.tasks[task_name] = TaskDef(
                name=task_name,
                fn=func,
                queue=task_queue,
                timeout_s=checked.timeout,
                retries=checked.retries,
                retry_backoff_s=checked.retry_backoff,
                retry_backoff_max_s=checked.retry_backoff_max,
                result_ttl_s=self.result_ttl_s if checked.result_ttl is None
                else checked.result_ttl,
                dead_ttl_s=self.dead_ttl_s if checked.dead_ttl is None else checked.dead_ttl,
                dead_letter=checked.dead_letter,
                is_async=inspect.iscoroutinefunction(func),
                limits=_limits(task_name, checked),
            )
            return Task(self, definition, func)

        return register(fn) if fn is not None else register


    def periodic(
        self,
        *,
        every: timedelta | float | None = None,
        cron: str | None = None,
        timezone: str | None = None,
        name: str | None = None,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        queue: str | None = None,
        priority: int = 0,
        catch_up: Literal["latest", "all", "none"] = "latest",
        max_catch_up: int = periodic.DEFAULT_MAX_CATCH_UP,
    ) -> Callable[[Callable[P, R]], Task[P, R]]:
        """Run a task periodically: ``every`` so long (a timedelta or seconds, counted
        from the Unix epoch) or by a 5- or 6-field ``cron`` expression in ``timezone``
        (default UTC). Each tick is enqueued once, with ``args``/``kwargs``, on ``queue``
        (default: the task's) at ``priority``. Ticks missed while nothing ticked:
        ``catch_up="latest"`` enqueues the latest, ``"all"`` up to ``max_catch_up`` of
        the latest, ``"none"`` none. Decorates a function (registered as a task, named
        as ``@app.task`` names it) or a task from ``@app.task`` (then ``name`` names
        the schedule, so one task can have several). Bad options raise ConfigError."""
        options = {
            "every": every, "cron": cron, "timezone": timezone, "queue": queue,
            "priority": priority, "args": args, "kwargs": {} if kwargs is None else kwargs,
            "catch_up": catch_up, "max_catch_up": max_catch_up,
        }

        def register(target: Callable[P, R]) -> Task[P, R]:
            label = name or (target.name if isinstance(target, Task) else
                             f"{target.__module__}.{target.__qualname__}")
            where = f"periodic {label!r}"
            if label in self.schedules:
                raise ConfigError(f"{where}: a schedule of that name is registered twice")
            checked: _PeriodicOptions = _validated(_PeriodicOptions, where, options)
            cadence = _cadence(where, checked)  # all checked before the task is registered
            try:
                if checked.queue is not None:
                    validate_queue_name(checked.queue)
                encode_payload(list(checked.args), checked.kwargs, self.max_payload_bytes)
            except (ValueError, InvalidTask) as exc:
                raise ConfigError(f"{where}: {exc}") from None
            task = target if isinstance(target, Task) else self.task(
                name=name, queue=checked.queue or "default")(target)
            limits = task.definition.limits
            try:
                limit = "" if limits is None else limits.spec(checked.args, checked.kwargs)
            except ValueError as exc:
                raise ConfigError(f"{where}: {exc}") from None
            self.schedules[label] = periodic.Schedule(
                name=label, task=task.name, queue=checked.queue or task.definition.queue,
                cadence=cadence, args=tuple(checked.args), kwargs=checked.kwargs,
                priority=checked.priority, catch_up=periodic.CatchUp(checked.catch_up),
                max_catch_up=checked.max_catch_up, limit=limit,
            )
            return task

        return register


def resolve_prefix(given: str | None, app: App | None) -> str:
    """The key prefix a component uses: ``given`` (--prefix, $CORRAL_PREFIX, a
    TaskQueue's spec.redis.prefix), else the app's, else ``corral``. A given prefix
    that differs from one the app's code sets would read and write other keys than the
    app's producers: that is refused rather than guessed."""
    if given is None:
        return app.prefix if app is not None else DEFAULT_PREFIX
    try:
        validate_prefix(given)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if app is not None and app.prefix_is_set and app.prefix != given:
        raise ConfigError(f"key prefix {given!r} differs from the app's prefix "
                          f"{app.prefix!r} (App(prefix=...)); use the same one")
    return given


def _limits(task_name: str, checked: _TaskOptions) -> Limits | None:
    if checked.rate_limit is None and checked.concurrency_limit is None:
        if checked.limit_key is not None:
            raise ConfigError(f"task {task_name!r}: limit_key needs rate_limit or "
                              "concurrency_limit")
        return None
    rate = parse_rate(checked.rate_limit) if checked.rate_limit is not None else None
    return Limits(task_name, rate, checked.concurrency_limit, checked.limit_key)


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
