"""The local scheduler: which prefetched task starts next. Pure code, no I/O.

Within a queue, higher priority first and FIFO within a priority. Across queues,
start-time fair queueing: each queue's next item carries a virtual start time, and
a start costs a queue ``1/weight`` of virtual time; the item with the earliest
virtual finish (start + cost) goes first. A queue that gets work again starts at
the current virtual time, so it neither hoards credit from its idle spell nor
carries a debt earned while other queues came and went. Over any window the starts
follow the weights closely, a queue with no work gives its share to the others,
and between two starts of a queue with work each other queue starts at most
``ceil(its weight / this weight)`` times.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from typing import Generic, TypeVar

T = TypeVar("T")
PRIORITY_LEVELS = 10


class _QueueBuffer(Generic[T]):
    __slots__ = ("by_priority", "next_start", "size", "stride", "weight")

    def __init__(self, weight: int, virtual_unit: int) -> None:
        self.weight = weight
        self.stride = virtual_unit // weight
        self.next_start = 0  # the virtual start time of this queue's next item
        self.size = 0
        self.by_priority: list[deque[T]] = [deque() for _ in range(PRIORITY_LEVELS)]

    def pop_first(self) -> T:
        for level in reversed(self.by_priority):
            if level:
                self.size -= 1
                return level.popleft()
        raise IndexError("pop from an empty queue buffer")


class LocalScheduler(Generic[T]):
    """Prefetched items of several weighted queues, handed out one at a time."""

    def __init__(self, weights: Mapping[str, int]) -> None:
        if not weights:
            raise ValueError("at least one queue is needed")
        for queue, weight in weights.items():
            if weight < 1:
                raise ValueError(f"queue {queue!r}: weight must be >= 1, not {weight}")
        # Virtual time counts in 1/lcm(weights): every queue's cost per start is an exact
        # integer, so ties stay ties and picks stay integer comparisons.
        virtual_unit = math.lcm(*weights.values())
        self._buffers = {
            queue: _QueueBuffer[T](weight, virtual_unit) for queue, weight in weights.items()
        }
        self._size = 0
        self._virtual_now = 0  # the virtual start time of the item picked last

    def __len__(self) -> int:
        return self._size

    def count(self, queue: str) -> int:
        return self._buffers[queue].size

    def push(self, queue: str, priority: int, item: T) -> None:
        buffer = self._buffers[queue]
        if not buffer.size and buffer.next_start < self._virtual_now:
            buffer.next_start = self._virtual_now
        buffer.by_priority[priority].append(item)
        buffer.size += 1
        self._size += 1

    def pop(self) -> tuple[str, T] | None:
        """The next item to start and its queue, or None when nothing is buffered."""
        if not self._size:
            return None
        chosen_queue = ""
        chosen: _QueueBuffer[T] | None = None
        best_finish = 0
        for queue, buffer in self._buffers.items():
            if buffer.size:
                finish = buffer.next_start + buffer.stride
                # On a tie the item that started earlier in virtual time goes first: it
                # spreads a light queue's turns between a heavy one's.
                if (
                    chosen is None
                    or finish < best_finish
                    or (finish == best_finish and buffer.next_start < chosen.next_start)
                ):
                    chosen_queue, chosen, best_finish = queue, buffer, finish
        assert chosen is not None
        self._virtual_now = chosen.next_start
        chosen.next_start = best_finish
        item = chosen.pop_first()
        self._size -= 1
        return chosen_queue, item

    def remove(self, queue: str, match: Callable[[T], bool]) -> list[T]:
        """Take out the items of ``queue`` that ``match`` (for cancelled tasks)."""
        buffer = self._buffers[queue]
        removed: list[T] = []
        for index, level in enumerate(buffer.by_priority):
            kept = deque(item for item in level if not match(item))
            if len(kept) != len(level):
                removed.extend(item for item in level if match(item))
                buffer.by_priority[index] = kept
        buffer.size -= len(removed)
        self._size -= len(removed)
        return removed

    def drain(self) -> Iterator[tuple[str, T]]:
        """Take out every buffered item (for shutdown), queue by queue."""
        for queue, buffer in self._buffers.items():
            for level in buffer.by_priority:
                while level:
                    yield queue, level.popleft()
            self._size -= buffer.size
            buffer.size = 0
            buffer.next_start = 0
        self._virtual_now = 0
