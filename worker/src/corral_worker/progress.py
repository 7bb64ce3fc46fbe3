"""Task progress (``current_task().set_progress``), coalesced: only the latest value of
each task is kept, and one script call per queue writes a flush's worth."""

from __future__ import annotations

import asyncio
import logging

from redis.exceptions import RedisError

from corral.keys import queue_keys
from corral.scripts import Scripts

log = logging.getLogger("corral.worker")

FLUSH_DELAY_S = 0.2  # how long a reported value may wait to be batched with others
MAX_PER_CALL = 500


class ProgressWriter:
    def __init__(self, scripts: Scripts, timeout_s: float, prefix: str) -> None:
        self._scripts = scripts
        self._prefix = prefix
        self._timeout_s = timeout_s
        self._pending: dict[str, dict[str, tuple[float, str]]] = {}
        self._flush: asyncio.TimerHandle | None = None
        self._writes: set[asyncio.Task[None]] = set()
        self._loop = asyncio.get_running_loop()

    def report(self, queue: str, task_id: str, fraction: float, message: str) -> None:
        """Called from the task: in the event loop, or from a task's thread."""
        self._loop.call_soon_threadsafe(self._keep, queue, task_id, fraction, message)

    def _keep(self, queue: str, task_id: str, fraction: float, message: str) -> None:
        self._pending.setdefault(queue, {})[task_id] = (fraction, message)
        if self._flush is None:
            self._flush = self._loop.call_later(FLUSH_DELAY_S, self._start_flush)

    def _start_flush(self) -> None:
        self._flush = None
        pending, self._pending = self._pending, {}
        for queue, values in pending.items():
            task = asyncio.create_task(self._write(queue, values), name="corral:progress")
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)

    async def _write(self, queue: str, values: dict[str, tuple[float, str]]) -> None:
        keys = queue_keys(queue, self._prefix)
        items = list(values.items())
        for start in range(0, len(items), MAX_PER_CALL):
            chunk = items[start:start + MAX_PER_CALL]
            try:
                async with asyncio.timeout(self._timeout_s):
                    await self._scripts.progress(
                        keys, [keys.task(task_id) for task_id, _ in chunk],
                        [v for _, (fraction, message) in chunk
                         for v in (repr(fraction), message)])
            except (RedisError, OSError, TimeoutError) as exc:
                # Progress is advisory: a lost update is replaced by the next one.
                log.warning("progress of %d tasks not written: %s", len(chunk), exc)

    async def close(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
            self._start_flush()
        if self._writes:
            await asyncio.wait(self._writes, timeout=self._timeout_s)
