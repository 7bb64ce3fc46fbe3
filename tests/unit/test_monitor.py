"""The pure parts of what `corral top` shows: rates, percentiles, rows, sorting."""

from __future__ import annotations

from corral.depths import QueueDepth, WorkerInfo
from corral.monitor import (
    QUEUE_SORTS,
    WINDOW_S,
    QueueHistory,
    View,
    arrange,
    percentile,
    queue_row,
    worker_rows,
)


def _depth(queue: str, ready: int = 0, in_flight: int = 0, dead: int = 0,
           workers: tuple[WorkerInfo, ...] = ()) -> QueueDepth:
    return QueueDepth(queue, (ready,) + (0,) * 9, 0, 0, in_flight, dead, workers)


def _worker(worker_id: str, queue: str, in_flight: int, heartbeat_ms: int) -> WorkerInfo:
    return WorkerInfo(worker_id, in_flight, in_flight, 10, (queue,), 1_000, heartbeat_ms)


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0], 99) == 3.0
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(list(reversed(values)), 100) == 100.0


def test_rates_need_two_samples_then_count_finishes_and_claims() -> None:
    history = QueueHistory()
    history.add(100.0, in_flight=5, finished=7, waits_s=[])
    assert history.rates() == (None, None)
    # 10 s later: 20 finished, and in flight went from 5 to 15, so 30 were claimed.
    history.add(110.0, in_flight=15, finished=20, waits_s=[0.5, 1.5])
    started, finished = history.rates()
    assert finished == 2.0 and started == 3.0
    assert history.wait_percentiles() == (0.5, 1.5)


def test_window_drops_old_samples_but_keeps_a_base() -> None:
    history = QueueHistory()
    history.add(0.0, in_flight=0, finished=0, waits_s=[9.0])
    history.add(10.0, in_flight=0, finished=100, waits_s=[])
    history.add(10.0 + WINDOW_S, in_flight=0, finished=60, waits_s=[1.0])
    started, finished = history.rates()
    # The 100 finishes seen at t=10 are the base's, before the window.
    assert finished == 60 / WINDOW_S and started == finished
    assert history.wait_percentiles() == (1.0, 1.0)


def test_claims_never_go_negative() -> None:
    history = QueueHistory()
    history.add(0.0, in_flight=50, finished=0, waits_s=[])
    history.add(10.0, in_flight=0, finished=0, waits_s=[])  # leases expired, say
    assert history.rates() == (0.0, 0.0)


def test_workers_are_one_row_each_across_queues() -> None:
    depths = [
        _depth("a", workers=(_worker("w1", "a", 3, 9_000), _worker("w2", "a", 1, 8_000))),
        _depth("b", workers=(_worker("w1", "b", 2, 9_500),)),
    ]
    rows = {r.worker_id: r for r in worker_rows(depths, now_ms=10_000)}
    assert rows["w1"].in_flight == 5 and rows["w1"].queues == ("a", "b")
    assert rows["w1"].heartbeat_age_s == 0.5 and rows["w1"].uptime_s == 9.0
    assert rows["w2"].in_flight == 1 and rows["w2"].heartbeat_age_s == 2.0


def test_arrange_filters_by_queue_and_sorts() -> None:
    history = QueueHistory()
    queues = [queue_row(_depth(name, ready=n, dead=d), history)
              for name, n, d in [("mail", 5, 0), ("default", 50, 1), ("mail-bulk", 1, 9)]]
    workers = worker_rows(
        [_depth("mail", workers=(_worker("m", "mail", 1, 1),)),
         _depth("default", workers=(_worker("d", "default", 7, 1),))], now_ms=2)
    view = View(queues, workers)
    by_backlog = arrange(view, "", 0, 0)
    assert [r.queue for r in by_backlog.queues] == ["default", "mail", "mail-bulk"]
    assert [w.worker_id for w in by_backlog.workers] == ["d", "m"]
    dead = [label for label, _, _ in QUEUE_SORTS].index("dead")
    assert arrange(view, "", dead, 0).queues[0].queue == "mail-bulk"
    mail = arrange(view, "MAIL", 0, 0)
    assert [r.queue for r in mail.queues] == ["mail", "mail-bulk"]
    assert [w.worker_id for w in mail.workers] == ["m"]
