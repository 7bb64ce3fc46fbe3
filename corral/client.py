"""The producer side: enqueue tasks, read their status and results, cancel them."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Generic, TypeVar, cast

from redis.asyncio import Redis
from redis.exceptions import RedisError

from corral import tracing
from corral.app import App, resolve_prefix
from corral.channels import Channels
from corral.connection import connect, default_url
from corral.errors import InvalidTask, TaskCancelled, TaskFailed
from corral.keys import QueueKeys, new_task_id, queue_keys, queue_of_channel, queue_of_task_id
from corral.retention import DEFAULT_RESULT_TTL_S
from corral.scripts import Scripts, call_many
from corral.serialization import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    decode_error,
    decode_json,
    encode_payload,
)
from corral.states import FINAL_STATES, Status

R = TypeVar("R")
_ENQUEUE_CHUNK = 500
# enqueue.lua's arguments per task: id, name, payload, priority, delay_ms, key, limit.
_ENQUEUE_GROUP = 7


@dataclass(frozen=True, slots=True)
class Progress:
    """The latest progress a running task reported (``current_task().set_progress``)."""

    fraction: float
    message: str


@dataclass(frozen=True, slots=True)
class Enqueue:
    """One task call for ``Client.enqueue_many`` (dicts with these keys work too)."""

    name: str
    args: Sequence[Any] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    queue: str | None = None
    priority: int = 0
    delay: float = 0.0
    key: str | None = None


class TaskHandle(Generic[R]):
    """A reference to an enqueued task; ``R`` is its result's type (``Any`` when it was
    enqueued by name)."""

    __slots__ = ("_client", "id", "queue")

    def __init__(self, client: Client, queue: str, task_id: str) -> None:
        self._client = client
        self.queue = queue
        self.id = task_id

    def __repr__(self) -> str:
        return f"TaskHandle(queue={self.queue!r}, id={self.id!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TaskHandle) and (other.queue, other.id) == (self.queue, self.id)

    def __hash__(self) -> int:
        return hash((self.queue, self.id))

    async def status(self) -> Status:
        return await self._client.status(self.id, queue=self.queue)

    async def result(self, timeout: float | None = None) -> R:
        return cast(R, await self._client.result(self.id, queue=self.queue, timeout=timeout))

    async def cancel(self) -> bool:
        return await self._client.cancel(self.id, queue=self.queue)

    async def progress(self) -> Progress | None:
        return await self._client.progress(self.id, queue=self.queue)


class Client:
    """An asyncio client for one Redis. Use ``async with`` or ``await client.close()``."""

    def __init__(
        self,
        redis: Redis,
        *,
        app: App | None = None,
        result_ttl_s: float | None = None,
        max_payload_bytes: int | None = None,
        prefix: str | None = None,
    ) -> None:
        """``prefix``: the key prefix (default: the app's, else ``corral``)."""
        self.redis = redis
        self.app = app
        self.prefix = resolve_prefix(prefix, app)
        # `is None`, not `or`: 0 means "keep no result".
        if result_ttl_s is None:
            result_ttl_s = app.result_ttl_s if app else DEFAULT_RESULT_TTL_S
        self.result_ttl_s = result_ttl_s
        self.max_payload_bytes = max_payload_bytes or (
            app.max_payload_bytes if app else DEFAULT_MAX_PAYLOAD_BYTES
        )
        self.scripts = Scripts.register(redis)
        self._results = _ResultWaiter(redis)
        if app is not None and app.client is None:
            app.client = self

    @classmethod
    def from_url(cls, url: str | None = None, **kwargs: Any) -> Client:
        """A client for ``url`` (default: ``$CORRAL_REDIS_URL``, then redis://localhost:6379/0)."""
        return cls(connect(url or default_url()), **kwargs)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self.app is not None and self.app.client is self:
            self.app.client = None
        await self._results.close()
        await self.redis.aclose()

    # -- enqueue -----------------------------------------------------------------

    async def enqueue(
        self,
        name: str,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        *,
        queue: str | None = None,
        priority: int = 0,
        delay: float = 0.0,
        key: str | None = None,
    ) -> TaskHandle[Any]:
        """Enqueue one task. With ``key``, a live task with the same key is returned instead."""
        # `is None`, not `or`: a falsy wrong value (0, "", []) must be refused, not ignored.
        call = Enqueue(name, () if args is None else args, {} if kwargs is None else kwargs,
                       queue, priority, delay, key)
        with tracing.producing(name) as publish:
            keys, argv = self._prepare(call, publish.carrier)
            ids = await self.scripts.enqueue(keys, _records(keys, argv), argv)
            task_id = ids[0].decode()
            publish.sent(keys.queue, [task_id])
        return TaskHandle(self, keys.queue, task_id)

    async def enqueue_many(
        self, calls: Iterable[Enqueue | Mapping[str, Any]]
    ) -> list[TaskHandle[Any]]:
        """Enqueue many tasks in pipelined round trips; all are checked before any is sent."""
        items = [_as_enqueue(call) for call in calls]
        if not items:
            return []
        with tracing.producing(items[0].name) as publish:
            handles = await self._enqueue_many(items, publish.carrier)
            queues = {handle.queue for handle in handles}
            publish.sent(queues.pop() if len(queues) == 1 else "(several)",
                         [handle.id for handle in handles])
        return handles

    async def _enqueue_many(
        self, calls: list[Enqueue], trace: dict[str, str] | None
    ) -> list[TaskHandle[Any]]:
        prepared = [self._prepare(call, trace) for call in calls]
        batches: list[tuple[QueueKeys, list[Any]]] = []
        most = _ENQUEUE_GROUP * _ENQUEUE_CHUNK
        for keys, call_argv in prepared:
            if batches and batches[-1][0] is keys and len(batches[-1][1]) < most:
                batches[-1][1].extend(call_argv)
            else:
                batches.append((keys, list(call_argv)))
        replies = await call_many(self.redis, [
            (self.scripts.enqueue, keys, _records(keys, argv), argv) for keys, argv in batches
        ])
        return [
            TaskHandle(self, keys.queue, task_id.decode())
            for (keys, _), ids in zip(batches, replies, strict=True)
            for task_id in ids
        ]

    def _prepare(
        self, call: Enqueue, trace: dict[str, str] | None = None
    ) -> tuple[QueueKeys, tuple[Any, ...]]:
        if not isinstance(call.name, str) or not call.name:
            raise InvalidTask("task name must be a non-empty string")
        task_def = self.app.tasks.get(call.name) if self.app else None
        if self.app is not None and task_def is None:
            raise InvalidTask(f"unknown task {call.name!r}")
        queue = call.queue
        if queue is None:  # not `or`: an empty name is refused, not taken for the default
            queue = task_def.queue if task_def else "default"
        try:
            keys = queue_keys(queue, self.prefix)
        except (ValueError, TypeError) as exc:
            raise InvalidTask(str(exc)) from None
        if isinstance(call.priority, bool) or not isinstance(call.priority, int):
            raise InvalidTask(f"priority must be an integer 0-9, not {call.priority!r}")
        if not 0 <= call.priority <= 9:
            raise InvalidTask(f"priority must be between 0 and 9, not {call.priority}")
        if not isinstance(call.delay, (int, float)) or not math.isfinite(call.delay):
            raise InvalidTask(f"delay must be a finite number of seconds, not {call.delay!r}")
        if call.delay < 0:
            raise InvalidTask(f"delay must not be negative, not {call.delay}")
        if call.key is not None and (not isinstance(call.key, str) or not call.key):
            raise InvalidTask("key must be a non-empty string")
        payload = encode_payload(
            cast(list[Any], call.args), cast(dict[str, Any], call.kwargs), self.max_payload_bytes,
            trace,
        )
        delay_ms = math.ceil(call.delay * 1000)
        task_id = new_task_id(keys.queue)
        limit = ""
        if task_def is not None and task_def.limits is not None:
            try:
                limit = task_def.limits.spec(call.args, call.kwargs)
            except ValueError as exc:
                raise InvalidTask(f"task {call.name!r}: {exc}") from None
        return keys, (task_id, call.name, payload, call.priority, delay_ms, call.key or "",
                      limit)

    # -- status, results, cancellation -------------------------------------------

    # ``queue=None``: the queue named in the id (``default`` for ids made before ids
    # named their queue).

    def handle(self, task_id: str, queue: str | None = None) -> TaskHandle[Any]:
        return TaskHandle(self, task_queue(task_id, queue), task_id)

    async def status(self, task_id: str, *, queue: str | None = None) -> Status:
        key = queue_keys(task_queue(task_id, queue), self.prefix).task(task_id)
        return Status.of(cast(bytes | None, await self.redis.hget(key, "state")))

    async def progress(self, task_id: str, *, queue: str | None = None) -> Progress | None:
        """The latest progress the task reported, or None if it reported none."""
        key = queue_keys(task_queue(task_id, queue), self.prefix).task(task_id)
        fraction, message = cast(list[bytes | None], await self.redis.hmget(
            key, ["progress", "progress_message"]))
        if fraction is None:
            return None
        return Progress(float(fraction), (message or b"").decode())

    async def result(
        self, task_id: str, *, queue: str | None = None, timeout: float | None = None
    ) -> Any:
        """The task's JSON result, waiting for it (by pub/sub, not polling) up to ``timeout`` s.
        Raises TaskFailed (or TaskCancelled) when it ended without one, TimeoutError when
        it has not ended in time, and KeyError when the id is unknown or expired."""
        keys = queue_keys(task_queue(task_id, queue), self.prefix)
        async with self._results.waiting(keys, task_id) as finished:
            record = await self._final_record(keys, task_id)
            try:
                async with asyncio.timeout(timeout):
                    while record is None:
                        await finished.wait()
                        finished.clear()
                        record = await self._final_record(keys, task_id)
            except TimeoutError:
                raise TimeoutError(f"task {task_id} did not finish within {timeout} s") from None
        return _result_of(task_id, record)

    async def _final_record(
        self, keys: QueueKeys, task_id: str
    ) -> dict[str, bytes | None] | None:
        fields = cast(
            list[bytes | None],
            await self.redis.hmget(keys.task(task_id), ["state", "result", "error", "reason"]),
        )
        state, result, error, reason = fields
        if state is None:
            raise KeyError(f"no task {task_id} in queue {keys.queue!r} (unknown or expired)")
        if state.decode() not in FINAL_STATES:
            return None
        return {"state": state, "result": result, "error": error, "reason": reason}

    async def cancel(self, task_id: str, *, queue: str | None = None) -> bool:
        """Cancel a queued, scheduled, prefetched or running task. False when it was
        unknown or finished."""
        keys = queue_keys(task_queue(task_id, queue), self.prefix)
        done = await self.scripts.cancel(
            keys, [keys.task(task_id)], [task_id, int(self.result_ttl_s * 1000)]
        )
        return bool(done)


def task_queue(task_id: str, queue: str | None = None) -> str:
    """``queue`` when given, else the queue named in the id, else ``default``."""
    if queue is not None:
        return queue
    return queue_of_task_id(task_id) or "default"


def _result_of(task_id: str, record: Mapping[str, bytes | None]) -> Any:
    state = (record["state"] or b"").decode()
    if state == "succeeded":
        result = record["result"]
        return decode_json(result) if result else None
    error = decode_error(record["error"])
    if not error["type"] and record["reason"]:
        error = {"type": "DeadLetter", "message": record["reason"].decode(), "traceback": ""}
    exc_type = TaskCancelled if state == "cancelled" else TaskFailed
    raise exc_type(task_id, state, error["type"] or "Cancelled", error["message"],
                   error["traceback"])


def _as_enqueue(call: Enqueue | Mapping[str, Any]) -> Enqueue:
    if isinstance(call, Enqueue):
        return call
    try:
        return Enqueue(**call)
    except TypeError as exc:
        raise InvalidTask(f"bad enqueue_many item: {exc}") from None


def _records(keys: QueueKeys, argv: Sequence[Any]) -> list[str]:
    """The record key of each task in enqueue's argument groups (id first)."""
    return [keys.task(argv[i]) for i in range(0, len(argv), _ENQUEUE_GROUP)]


class _ResultWaiter:
    """One pub/sub connection, subscribed to the ``done`` channel of each queue that
    someone waits on; wakes the waiters of the ids each message names."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._pubsub: Channels | None = None
        self._reader: asyncio.Task[None] | None = None
        self._channels: set[str] = set()
        self._waiters: dict[tuple[str, str], list[asyncio.Event]] = {}

    @contextlib.asynccontextmanager
    async def waiting(self, keys: QueueKeys, task_id: str) -> Any:
        event = asyncio.Event()
        slot = (keys.queue, task_id)
        self._waiters.setdefault(slot, []).append(event)
        try:
            await self._subscribe(keys.done_channel)
            yield event
        finally:
            waiters = self._waiters.get(slot, [])
            if event in waiters:
                waiters.remove(event)
            if not waiters:
                self._waiters.pop(slot, None)

    async def _subscribe(self, channel: str) -> None:
        if channel in self._channels:
            return
        if self._pubsub is None:
            self._pubsub = Channels(self._redis)
        await self._pubsub.subscribe(channel)
        self._channels.add(channel)
        if self._reader is None:
            self._reader = asyncio.create_task(self._read(), name="corral:client:results")

    async def _read(self) -> None:
        assert self._pubsub is not None
        while True:
            try:
                channel, data = await self._pubsub.get()
            except (RedisError, OSError):
                # redis-py resubscribes on reconnect; a message lost meanwhile is made up
                # for by waking every waiter, which then reads the state again.
                await asyncio.sleep(0.5)
                for events in self._waiters.values():
                    for event in events:
                        event.set()
                continue
            queue = queue_of_channel(channel)
            for task_id in data.decode().split():
                for event in self._waiters.get((queue, task_id), ()):
                    event.set()

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        if self._pubsub is not None:
            await self._pubsub.aclose()
            self._pubsub = None
        self._channels.clear()
