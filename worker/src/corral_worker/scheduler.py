"""The local scheduler: which prefetched task starts next. Pure code, no I/O.

Within a queue, higher priority first and FIFO within a priority. Across queues,
a smooth weighted round robin (the interleaved variant nginx uses) over the
queues that have work: each pick adds every candidate's weight to its credit,
takes the queue with the most credit and charges it the candidates' total.
Over any window the starts follow the weights closely, a queue with no work
gives its share to the others, and no queue with work waits for more than one
round.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Mapping
from typing import Generic, TypeVar

T = TypeVar("T")
PRIORITY_LEVELS = 10


class _QueueBuffer(Generic[T]):
    __slots__ = ("by_priority", "credit", "size", "weight")

    def __init__(self, weight: int) -> None:
        self.weight = weight
        self.credit = 0
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
        self._buffers = {queue: _QueueBuffer[T](weight) for queue, weight in weights.items()}
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def count(self, queue: str) -> int:
        return self._buffers[queue].size

    def push(self, queue: str, priority: int, item: T) -> None:
        buffer = self._buffers[queue]
        buffer.by_priority[priority].append(item)
        buffer.size += 1
        self._size += 1

    def pop(self) -> tuple[str, T] | None:
        """The next item to start and its queue, or None when nothing is buffered."""
        if not self._size:
            return None
        chosen_queue = ""
        chosen: _QueueBuffer[T] | None = None
        total = 0
        for queue, buffer in self._buffers.items():
            if buffer.size:
                buffer.credit += buffer.weight
                total += buffer.weight
                if chosen is None or buffer.credit > chosen.credit:
                    chosen_queue, chosen = queue, buffer
        assert chosen is not None
        chosen.credit -= total
        item = chosen.pop_first()
        if not chosen.size:
            # An idle queue neither hoards credit nor carries a debt into its next busy spell.
            chosen.credit = 0
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
        if not buffer.size:
            buffer.credit = 0
        return removed

    def drain(self) -> Iterator[tuple[str, T]]:
        """Take out every buffered item (for shutdown), queue by queue."""
        for queue, buffer in self._buffers.items():
            for level in buffer.by_priority:
                while level:
                    yield queue, level.popleft()
            self._size -= buffer.size
            buffer.size = 0
            buffer.credit = 0
