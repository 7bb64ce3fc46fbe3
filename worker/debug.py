"""A dump of every asyncio task: name, state and where it is suspended.
It names code locations only, never task arguments."""

from __future__ import annotations

import asyncio


def dump_tasks(limit_frames: int = 8) -> str:
    lines: list[str] = []
    tasks = sorted(asyncio.all_tasks(), key=lambda t: t.get_name())
    lines.append(f"{len(tasks)} asyncio tasks")
    for task in tasks:
        state = "cancelling" if task.cancelling() else ("done" if task.done() else "pending")
        lines.append(f"\n{task.get_name()} [{state}]")
        frames = task.get_stack(limit=limit_frames)
        if not frames:
            coro = task.get_coro()
            lines.append(f"  (no frame) {getattr(coro, '__qualname__', repr(coro))}")
        for frame in frames:
            code = frame.f_code
            lines.append(f"  {code.co_filename}:{frame.f_lineno} in {code.co_qualname}")
    return "\n".join(lines) + "\n"
