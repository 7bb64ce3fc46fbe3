"""``corral.SyncClient``: the producer API for code without an event loop (Django, Flask,
scripts). It runs a ``corral.Client`` on a private event loop in a daemon thread and
waits for each call, so it is safe to share between threads."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from types import TracebackType
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar

from corral.app import App
from corral.client import Client, Enqueue, Progress, TaskHandle
from corral.states import Status

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class SyncTaskHandle(Generic[R]):
    """A blocking view of a :class:`corral.TaskHandle`."""

    __slots__ = ("_client", "_handle")

    def __init__(self, client: SyncClient, handle: TaskHandle[R]) -> None:
        self._client = client
        self._handle = handle

    @property
    def id(self) -> str:
        return self._handle.id

    @property
    def queue(self) -> str:
        return self._handle.queue

    def __repr__(self) -> str:
        return f"SyncTaskHandle(queue={self.queue!r}, id={self.id!r})"

    def status(self) -> Status:
        return self._client.run(self._handle.status())

    def result(self, timeout: float | None = None) -> R:
        return self._client.run(self._handle.result(timeout))

    def cancel(self) -> bool:
        return self._client.run(self._handle.cancel())

    def progress(self) -> Progress | None:
        return self._client.run(self._handle.progress())


def _blocking(
    method: Callable[Concatenate[Client, P], Awaitable[T]],
) -> Callable[Concatenate[SyncClient, P], T]:
    """A Client coroutine method as a blocking SyncClient method, same parameters."""

    def call(self: SyncClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        async def run() -> T:
            return await method(self.client, *args, **kwargs)

        return self.run(run())

    call.__name__ = method.__name__
    call.__doc__ = method.__doc__
    return call


class SyncClient:
    """Like :class:`corral.Client`, without ``await``. Use ``with`` or call ``close()``.

    >>> with corral.SyncClient("redis://localhost:6379/0") as client:
    ...     handle = client.enqueue("resize", ["img-1"])
    ...     handle.result(timeout=10)
    """

    def __init__(self, url: str | None = None, *, app: App | None = None,
                 **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever,
                                        name="corral-sync-client", daemon=True)
        self._thread.start()

        async def make() -> Client:
            return Client.from_url(url, app=app, **options)

        self.client = self.run(make())

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the client's loop and wait for its outcome."""
        if self._loop.is_closed():
            coro.close()
            raise RuntimeError("the SyncClient is closed")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # Ctrl-C in the caller: do not leave the call running
            raise

    def enqueue(
        self,
        name: str,
        args: Iterable[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        *,
        queue: str | None = None,
        priority: int = 0,
        delay: float = 0.0,
        key: str | None = None,
    ) -> SyncTaskHandle[Any]:
        """Enqueue one task (see :meth:`corral.Client.enqueue`)."""
        handle = self.run(self.client.enqueue(
            name, None if args is None else list(args), kwargs, queue=queue,
            priority=priority, delay=delay, key=key))
        return SyncTaskHandle(self, handle)

    def enqueue_many(
        self, calls: Iterable[Enqueue | Mapping[str, Any]]
    ) -> list[SyncTaskHandle[Any]]:
        """Enqueue many tasks in pipelined round trips (see :meth:`Client.enqueue_many`)."""
        calls = list(calls)
        return [SyncTaskHandle(self, h) for h in self.run(self.client.enqueue_many(calls))]

    def handle(self, task_id: str, queue: str | None = None) -> SyncTaskHandle[Any]:
        return SyncTaskHandle(self, self.client.handle(task_id, queue))

    status = _blocking(Client.status)
    result = _blocking(Client.result)
    cancel = _blocking(Client.cancel)
    progress = _blocking(Client.progress)

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self.run(self.client.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
