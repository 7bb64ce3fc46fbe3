"""The verdict on an attempt, from what it raised and the task's settings (pure)."""

from __future__ import annotations

import random
import time

import pytest

from corral.app import TaskDef
from corral_worker.broker import Job, Outcome
from corral_worker.outcome import Finish, Stop, TaskError, decide
from corral_worker.resilience import LoopWatch


def _task(**settings: object) -> TaskDef:
    fields: dict[str, object] = {
        "name": "t", "fn": print, "queue": "default", "timeout_s": 2.0, "retries": 2,
        "retry_backoff_s": 1.0, "retry_backoff_max_s": 10.0, "result_ttl_s": 60.0,
        "dead_ttl_s": 3600.0, "dead_letter": True, "is_async": True,
    }
    fields.update(settings)
    return TaskDef(**fields)  # type: ignore[arg-type]


BOOM = TaskError("ValueError", "boom", "Traceback ...")
CANCELLED = TaskError("CancelledError", "")  # the worker's cancellation, as the task saw it


def test_returned_is_succeeded_with_the_result_ttl() -> None:
    verdict = decide(_task(), 1, None, None)
    assert verdict.finish is Finish.SUCCEEDED and verdict.ttl_ms == 60_000
    assert verdict.error is None and not verdict.timed_out


def test_raised_is_retried_with_backoff_while_attempts_are_left() -> None:
    verdict = decide(_task(), 2, BOOM, None, random.Random(1))
    assert verdict.finish is Finish.RETRY and verdict.error == BOOM
    assert 1_000 <= verdict.delay_ms <= 2_000  # base 1 s * 2**(2-1), spread over 50-100%


@pytest.mark.parametrize(("dead_letter", "finish", "ttl_ms"),
                         # dead: kept for the task's dead_ttl; failed: its result_ttl
                         [(True, Finish.DEAD, 3_600_000), (False, Finish.FAILED, 60_000)])
def test_raised_on_the_last_attempt(dead_letter: bool, finish: Finish, ttl_ms: int) -> None:
    verdict = decide(_task(dead_letter=dead_letter), 3, BOOM, None)
    assert verdict.finish is finish and verdict.error == BOOM and verdict.ttl_ms == ttl_ms


@pytest.mark.parametrize("raised", [None, TaskError("CancelledError", "")])
def test_timeout_is_a_timeout_error_whatever_the_task_did(raised: TaskError | None) -> None:
    verdict = decide(_task(retries=0), 1, raised, Stop.TIMEOUT)
    assert verdict.finish is Finish.DEAD and verdict.timed_out
    assert verdict.error is not None and verdict.error.type_name == "TimeoutError"
    assert "2.0 s" in verdict.error.message


def test_timeout_wins_over_what_the_task_raised_after_it() -> None:
    verdict = decide(_task(), 1, BOOM, Stop.TIMEOUT)
    assert verdict.finish is Finish.RETRY
    assert verdict.error is not None and verdict.error.type_name == "TimeoutError"


def test_cancel_request_is_cancelled_with_the_result_ttl() -> None:
    verdict = decide(_task(), 1, None, Stop.REQUEST)
    assert verdict.finish is Finish.CANCELLED and verdict.ttl_ms == 60_000
    assert verdict.error is not None and verdict.error.type_name == "CancelledError"


@pytest.mark.parametrize("stop", [Stop.SHUTDOWN, Stop.LEASE_LOST])
def test_shutdown_and_lost_lease_requeue_the_attempt(stop: Stop) -> None:
    verdict = decide(_task(), 1, CANCELLED, stop)
    assert verdict.finish is Finish.REQUEUE and verdict.error is None


def test_a_result_returned_during_shutdown_counts() -> None:
    assert decide(_task(), 1, None, Stop.SHUTDOWN).finish is Finish.SUCCEEDED


def test_cancelled_error_the_task_raised_itself_is_a_failure() -> None:
    verdict = decide(_task(retries=0), 1, CANCELLED, None)
    assert verdict.finish is Finish.DEAD and verdict.error == CANCELLED


def test_outcome_keeps_the_finish_scripts_wire_number() -> None:
    job = Job("default", "id", "t", b"", 0, 0, 1, "holder:1")
    assert Outcome(job, Finish.SUCCEEDED, ttl_ms=5).wire_number() == 5
    assert Outcome(job, Finish.RETRY, delay_ms=7).wire_number() == 7
    assert Outcome(job, Finish.REQUEUE, give_back=True).wire_number() == 1
    assert Outcome(job, Finish.REQUEUE).wire_number() == 0
    assert Outcome(job, Finish.DEAD).wire_number() == 0
    assert [f.code for f in Finish] == ["s", "f", "d", "c", "r", "q"]


def test_loop_watch_names_the_loops_past_their_deadline() -> None:
    watch = LoopWatch()
    with watch.pass_of("heartbeat", 3.0), watch.pass_of("ack:default", 10.0):
        now = time.monotonic()
        assert watch.overdue(now) == []
        assert watch.overdue(now + 5.0) == ["heartbeat"]
        assert watch.overdue(now + 11.0) == ["ack:default", "heartbeat"]
    assert watch.overdue(time.monotonic() + 100.0) == []  # passes that ended do not count
