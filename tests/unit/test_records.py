"""Reading a task's record and its attempt history, and capping stored errors (pure)."""

from __future__ import annotations

import json
import re

from corral.records import history_of, task_record
from corral.serialization import cap_text, decode_error, encode_error
from corral.states import FINAL_STATES, LIVE_STATES, Status


def test_status_of_a_stored_state() -> None:
    assert Status.of(b"prefetched") is Status.PREFETCHED and Status.PREFETCHED == "prefetched"
    assert Status.of(None) is Status.UNKNOWN and Status.of(b"bogus") is Status.UNKNOWN
    assert not FINAL_STATES & LIVE_STATES
    assert FINAL_STATES | LIVE_STATES | {Status.UNKNOWN} == set(Status)


def test_cap_text_keeps_both_ends_within_the_limit() -> None:
    assert cap_text("short", 100) == "short"
    text = "HEAD" + "x" * 10_000 + "ValueError: the end"
    capped = cap_text(text, 1000)
    assert len(capped) <= 1000
    assert capped.startswith("HEAD") and capped.endswith("ValueError: the end")
    marker = re.search(r"\n\[\.\.\. (\d+) characters cut \.\.\.\]\n", capped)
    assert marker is not None  # and it counts what is missing
    assert int(marker[1]) + len(capped) - len(marker[0]) == len(text)


def test_stored_errors_are_capped() -> None:
    error = decode_error(encode_error("E", "m" * 50_000, "t" * 100_000))
    assert len(error["message"]) <= 4_000 and len(error["traceback"]) <= 16_000


def _entry(n: int, outcome: str, error: bytes = b"") -> bytes:
    return json.dumps({"n": n, "worker": "w/1-a", "started_ms": 10 * n, "finished_ms": 10 * n + 5,
                       "outcome": outcome, "error": error.decode()}).encode()


def test_history_is_ordered_by_sequence_and_tolerates_damage() -> None:
    fields = {
        b"state": b"succeeded",
        b"attempt:10": _entry(3, "succeeded"),
        b"attempt:9": _entry(2, "retried", encode_error("ValueError", "boom", "Traceback...")),
        b"attempt:8": b"not json",
        b"attempt_seq": b"10",
    }
    history = history_of(fields)
    assert [(a.number, a.outcome) for a in history] == [(2, "retried"), (3, "succeeded")]
    assert (history[0].error_type, history[0].error_message, history[0].traceback) == (
        "ValueError", "boom", "Traceback...")
    record = task_record("t1", "default", fields)
    assert record.state is Status.SUCCEEDED
    value = record.json()
    assert value["state"] == "succeeded" and value["history"][1]["worker"] == "w/1-a"
    json.dumps(value)


def test_the_succeeded_attempt_is_read_from_the_record_itself() -> None:
    fields = {b"state": b"succeeded", b"attempts": b"2", b"worker": b"w/1-a",
              b"started_ms": b"100", b"finished_ms": b"150",
              b"attempt:1": _entry(1, "retried", encode_error("E", "m"))}
    history = history_of(fields)
    assert [(a.number, a.outcome, a.worker) for a in history] == [
        (1, "retried", "w/1-a"), (2, "succeeded", "w/1-a")]
    assert (history[1].started_ms, history[1].finished_ms) == (100, 150)
