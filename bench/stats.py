"""Pure statistics for the benchmark: medians, percentiles, throughput from task
records, and ratios against Corral computed run by run."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# enqueued_at, started_at, finished_at (monotonic s), pid, parent pid
Record = tuple[float, float, float, int, int]


def median(values: Iterable[float | None]) -> float | None:
    """The median of the values that are present; None when there are none."""
    present = sorted(v for v in values if v is not None)
    if not present:
        return None
    mid = len(present) // 2
    if len(present) % 2:
        return present[mid]
    return (present[mid - 1] + present[mid]) / 2


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), interpolating linearly between closest ranks.
    ``math.inf`` entries (tasks that never started) sort last, as they should."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0-100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    if low == high or ordered[high] == ordered[low]:
        return ordered[low]
    if math.isinf(ordered[high]):
        return math.inf
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Drain:
    completed: int
    expected: int
    elapsed_s: float  # length of the window the rate is over
    per_s: float
    window_tasks: int  # tasks that finished in that window
    processes_seen: int  # worker processes that ran at least one task

    @property
    def partial(self) -> bool:
        return self.completed < self.expected


def drain_rate(records: Sequence[Record], expected: int, cut_off_at: float | None = None,
               processes: int = 1, by_parent: bool = False) -> Drain:
    """Throughput of a drain of ``expected`` pre-enqueued tasks by ``processes``
    worker processes: the tasks that finished between the moment every process
    had started its first task and the last finish, over that window. So workers
    that start at different times are measured once all of them run; with one
    process the window is simply first start to last finish. If not every process
    ran a task, or fewer than a quarter of the tasks ran with all of them up, the
    window starts at the first start. A drain cut off before all tasks were done
    ends at ``cut_off_at``. ``by_parent`` counts processes by parent pid, for
    systems that fork a process per task."""
    if not records:
        return Drain(0, expected, 0.0, 0.0, 0, 0)
    first_start_by_proc: dict[int, float] = {}
    for r in records:
        proc = r[4] if by_parent else r[3]
        if proc not in first_start_by_proc or r[1] < first_start_by_proc[proc]:
            first_start_by_proc[proc] = r[1]
    end = max(r[2] for r in records)
    if len(records) < expected and cut_off_at is not None:
        end = max(end, cut_off_at)
    begin = min(first_start_by_proc.values())
    if len(first_start_by_proc) >= processes:
        all_up = max(first_start_by_proc.values())
        in_window = sum(1 for r in records if r[2] >= all_up)
        if in_window * 4 >= len(records) and end > all_up:
            begin = all_up
    window = [r for r in records if r[2] >= begin]
    elapsed_s = end - begin
    per_s = len(window) / elapsed_s if elapsed_s > 0 else 0.0
    return Drain(len(records), expected, elapsed_s, per_s, len(window),
                 len(first_start_by_proc))


@dataclass(frozen=True)
class Latency:
    p50_ms: float
    p99_ms: float
    max_ms: float
    completed: int
    expected: int


def start_latency(records: Sequence[Record], expected: int) -> Latency:
    """Enqueue-to-start latency of the records; tasks that never started count as
    infinitely late, so a system that falls behind cannot look fast."""
    delays = [(r[1] - r[0]) * 1000 for r in records]
    delays += [math.inf] * max(0, expected - len(delays))
    if not delays:
        return Latency(math.inf, math.inf, math.inf, 0, expected)
    return Latency(percentile(delays, 50), percentile(delays, 99), max(delays),
                   len(records), expected)


def paired_ratio(ours: Sequence[float | None], theirs: Sequence[float | None],
                 higher_is_better: bool = True) -> float | None:
    """How many times better Corral is than a peer: the median over runs of the
    ratio within each run (runs where either side failed are left out). For
    throughput that is ours/theirs; for latency, theirs/ours."""
    ratios = []
    for a, b in zip(ours, theirs, strict=False):
        if a is None or b is None:
            continue
        num, den = (a, b) if higher_is_better else (b, a)
        if den > 0 and math.isfinite(den):
            ratios.append(num / den)
        elif num > 0 and den == 0:
            ratios.append(math.inf)
    return median(ratios)
