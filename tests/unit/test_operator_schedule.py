"""Which TaskQueues the operator's one scheduler runs when: pure code, no I/O."""

from __future__ import annotations

import pytest

from corral_operator.schedule import Schedule, on_grid


def test_a_new_taskqueue_is_due_at_once_then_on_its_grid() -> None:
    s: Schedule[str] = Schedule()
    s.add("a", 1.0, now_s=100.3)
    assert s.next_due_s() == pytest.approx(100.3)
    assert s.take(100.3) == ["a"]
    assert s.done("a", 1.0, now_s=100.35) == pytest.approx(101.0)  # on the grid
    assert s.take(100.9) == []
    assert s.take(101.0) == ["a"]


def test_taskqueues_of_one_poll_interval_come_due_together() -> None:
    s: Schedule[str] = Schedule()
    for i, now_s in enumerate((10.1, 10.4, 10.8)):
        s.add(f"tq{i}", 5.0, now_s)
        assert s.take(now_s) == [f"tq{i}"]
        s.done(f"tq{i}", 5.0, now_s + 0.01)
    assert s.next_due_s() == pytest.approx(15.0)
    assert sorted(s.take(15.0)) == ["tq0", "tq1", "tq2"]


def test_a_running_pass_is_never_taken_twice() -> None:
    s: Schedule[str] = Schedule()
    s.add("a", 1.0, 0.0)
    assert s.take(0.0) == ["a"]
    assert s.take(50.0) == []
    assert s.next_due_s() is None  # nothing is waiting: the only key runs


def test_a_wake_up_during_a_pass_makes_it_due_when_done() -> None:
    s: Schedule[str] = Schedule()
    s.add("a", 60.0, 0.0)
    s.take(0.0)
    s.wake("a")
    assert s.take(1.0) == []  # still running
    assert s.done("a", 60.0, 2.0) == float("-inf")
    assert s.next_due_s() == float("-inf")
    assert s.take(2.0) == ["a"]
    assert s.done("a", 60.0, 2.5) == pytest.approx(60.0)  # the wake-up is used up
    assert s.take(3.0) == []


def test_a_woken_taskqueue_goes_first_and_once() -> None:
    s: Schedule[str] = Schedule()
    for key in ("a", "b"):
        s.add(key, 1.0, 0.0)
    assert sorted(s.take(0.0)) == ["a", "b"]
    s.done("a", 1.0, 0.1)
    s.done("b", 60.0, 0.1)
    s.wake("b")
    s.wake("b")
    assert s.take(1.0) == ["b", "a"]
    s.done("b", 60.0, 1.1)
    s.done("a", 1.0, 1.1)
    assert s.take(2.0) == ["a"]  # b's old due time is gone with the wake-up


def test_a_removed_taskqueue_is_never_taken() -> None:
    s: Schedule[str] = Schedule()
    s.add("a", 1.0, 0.0)
    s.add("b", 1.0, 0.0)
    s.take(0.0)
    s.remove("a")
    assert s.done("a", 1.0, 0.5) is None
    s.done("b", 1.0, 0.5)
    s.wake("a")
    assert s.take(5.0) == ["b"]
    assert "a" not in s and len(s) == 1


def test_adding_a_known_taskqueue_keeps_its_place_with_the_new_interval() -> None:
    s: Schedule[str] = Schedule()
    s.add("a", 1.0, 0.0)
    s.take(0.0)
    s.add("a", 5.0, 0.2)
    assert s.take(0.2) == []
    assert s.done("a", 5.0, 0.3) == pytest.approx(5.0)


@pytest.mark.parametrize("delay_s, grid_s, now_s, want_s", [
    (1.0, 1.0, 100.25, 0.75),   # a pass that took 0.25 s waits the rest of the tick
    (1.0, 1.0, 100.0, 1.0),     # exactly on the grid: a whole tick
    (5.0, 5.0, 101.0, 4.0),     # aligned to multiples of 5
    (10.0, 1.0, 100.5, 9.5),    # a backoff keeps its length, ends on the grid
    (30.0, 0.0, 100.5, 30.0),   # no grid
])
def test_waits_end_on_the_poll_grid(delay_s: float, grid_s: float, now_s: float,
                                    want_s: float) -> None:
    assert on_grid(delay_s, grid_s, now_s) == pytest.approx(want_s)
