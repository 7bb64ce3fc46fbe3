"""Which TaskQueues are due for a pass, for the one scheduler that polls them all.
Pure code: the caller gives the time.

Each TaskQueue is due on a common grid of its poll interval (multiples of it on the
process's clock), so TaskQueues with one ``pollSeconds`` come due together and
their Redis reads share one round trip. A pass never overlaps the TaskQueue's
previous one: a TaskQueue taken stays out of the schedule until it is done, and a
wake-up that comes meanwhile makes it due again at once when it is done.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K")


def on_grid(delay_s: float, grid_s: float, now_s: float) -> float:
    """``delay_s`` shortened so that the wait ends on a multiple of ``grid_s``. A pass
    that ran for X seconds past a grid point waits ``grid_s - X``."""
    if grid_s <= 0:
        return delay_s
    next_point = math.floor(now_s / grid_s) * grid_s + grid_s
    return max(0.0, next_point + max(0.0, delay_s - grid_s) - now_s)


@dataclass(slots=True)
class _Entry:
    grid_s: float
    due_s: float
    running: bool = False
    woken: bool = False  # woken while running: due again once done


@dataclass
class Schedule(Generic[K]):
    """Due times of keys (TaskQueue uids): a heap, entries replaced lazily."""

    _entries: dict[K, _Entry] = field(default_factory=dict)
    _heap: list[tuple[float, int, K]] = field(default_factory=list)
    _woken: list[K] = field(default_factory=list)
    _counter: int = 0  # ties in the heap never compare keys

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def add(self, key: K, grid_s: float, now_s: float) -> None:
        """A new key, due at once (its first pass). A known key keeps its place."""
        if key in self._entries:
            self._entries[key].grid_s = grid_s
            return
        self._entries[key] = _Entry(grid_s, now_s)
        self._push(key, now_s)

    def remove(self, key: K) -> None:
        self._entries.pop(key, None)  # its heap entries are skipped when they come up

    def wake(self, key: K) -> None:
        """Due now; if its pass is running, due again as soon as that is done."""
        entry = self._entries.get(key)
        if entry is None:
            return
        if entry.running:
            entry.woken = True
        elif not entry.woken:
            entry.woken = True
            self._woken.append(key)

    def take(self, now_s: float) -> list[K]:
        """The keys due at ``now_s``, woken ones first; each is running until
        :meth:`done`."""
        taken: list[K] = []
        for key in self._woken:
            entry = self._entries.get(key)
            if entry is not None and entry.woken and not entry.running:
                entry.woken = False
                entry.running = True
                taken.append(key)
        self._woken.clear()
        while self._heap and self._heap[0][0] <= now_s:
            due_s, _, key = heapq.heappop(self._heap)
            entry = self._entries.get(key)
            if entry is None or entry.running or entry.due_s != due_s:
                continue  # removed, taken by a wake-up, or rescheduled since
            entry.running = True
            taken.append(key)
        return taken

    def done(self, key: K, delay_s: float, now_s: float) -> float | None:
        """The pass of ``key`` is over; the next one in about ``delay_s``, on the grid.
        Returns when it is due (-inf: at once, it was woken; None: it was removed)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        entry.running = False
        entry.due_s = now_s + on_grid(delay_s, entry.grid_s, now_s)
        self._push(key, entry.due_s)
        if entry.woken:
            self._woken.append(key)
            return float("-inf")
        return entry.due_s

    def next_due_s(self) -> float | None:
        """When the next key comes due (None: none is scheduled). Woken keys: now."""
        if any(not e.running for k in self._woken if (e := self._entries.get(k))):
            return float("-inf")
        while self._heap:
            due_s, _, key = self._heap[0]
            entry = self._entries.get(key)
            if entry is not None and not entry.running and entry.due_s == due_s:
                return due_s
            heapq.heappop(self._heap)
        return None

    def _push(self, key: K, due_s: float) -> None:
        self._counter += 1
        heapq.heappush(self._heap, (due_s, self._counter, key))
