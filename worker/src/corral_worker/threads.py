"""Plain ``def`` tasks run on a bounded pool of threads. Python cannot stop a thread:
a call the worker stopped waiting for (its timeout passed, it was cancelled) keeps its
thread until the function returns. Such threads are counted as stuck, and while they
are stuck later calls wait for a free thread; a call's clock starts only once it has
a thread, so that wait is not charged to it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any


class ThreadRunner:
    def __init__(self, size: int) -> None:
        self._executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix="corral-task")
        self._lock = threading.Lock()
        self.stuck = 0  # threads still running a call nobody waits for

    async def run(self, fn: Callable[[], Any], on_start: Callable[[], None]) -> Any:
        """``fn()`` on a pool thread; ``on_start`` is called in that thread first."""
        call = _Call(self, fn, on_start)
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, call.run)
        except asyncio.CancelledError:
            call.abandon()
            raise

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class _Call:
    __slots__ = ("abandoned", "fn", "on_start", "runner", "running")

    def __init__(self, runner: ThreadRunner, fn: Callable[[], Any],
                 on_start: Callable[[], None]) -> None:
        self.runner = runner
        self.fn = fn
        self.on_start = on_start
        self.running = False
        self.abandoned = False

    def run(self) -> Any:  # in a pool thread
        if not self._begin():  # cancelled while it waited for a thread: never started
            return None
        try:
            self.on_start()
            return self.fn()
        finally:
            self._end()

    def _begin(self) -> bool:
        with self.runner._lock:
            self.running = not self.abandoned
            return self.running

    def _end(self) -> None:
        runner = self.runner
        with runner._lock:
            self.running = False
            if self.abandoned:
                runner.stuck -= 1

    def abandon(self) -> None:  # in the event loop
        runner = self.runner
        with runner._lock:
            self.abandoned = True
            if self.running:
                runner.stuck += 1
