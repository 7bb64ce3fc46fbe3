"""A dump of every asyncio task: name, state and where it is suspended (the whole
chain of awaits). It names code locations only, never task arguments."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from types import FrameType
from typing import Any


def _await_chain(coro: Any) -> tuple[list[FrameType], str]:
    """The frames from a task's coroutine down to what it waits on, and that thing."""
    frames: list[FrameType] = []
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None) or getattr(
            coro, "ag_frame", None
        )
        if frame is None:
            # A future (or its iterator): the bottom of the chain.
            return frames, type(coro).__name__.replace("FutureIter", "Future")
        frames.append(frame)
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None) or (
            getattr(coro, "ag_await", None)
        )
    return frames, ""


def dump_tasks(
    max_frames: int = 20, running_since: Mapping[asyncio.Task[Any], float] | None = None
) -> str:
    """``running_since`` maps the asyncio tasks that run corral tasks to their start
    (``time.monotonic()``); each of those says how long it has been running."""
    since = running_since or {}
    now = time.monotonic()
    tasks = sorted(asyncio.all_tasks(), key=lambda t: t.get_name())
    lines = [f"{len(tasks)} asyncio tasks"]
    for task in tasks:
        state = "cancelling" if task.cancelling() else ("done" if task.done() else "pending")
        started = since.get(task)
        running = f" running for {now - started:.1f} s" if started is not None else ""
        lines.append(f"\n{task.get_name()} [{state}]{running}")
        frames, waiting_on = _await_chain(task.get_coro())
        for frame in frames[-max_frames:]:
            code = frame.f_code
            lines.append(f"  {code.co_filename}:{frame.f_lineno} in {code.co_qualname}")
        if waiting_on:
            lines.append(f"  waiting on a {waiting_on}")
    return "\n".join(lines) + "\n"
