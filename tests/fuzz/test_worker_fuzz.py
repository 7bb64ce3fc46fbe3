"""Malformed queue entries written straight into Redis, as a broken producer, a bad
migration or a hand edit would leave them. One worker process serves them all: it
never crashes or stalls, and each bad entry lands in the dead-letter queue with its
reason. (A damaged priority or attempt count alone is not fatal: the ready list an id
sits in decides its priority, and a count that is not a whole number >= 0 counts as 0.)"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.embedded import EmbeddedRedis
from corral.keys import DEFAULT_PREFIX, queue_keys
from corral.serialization import DEFAULT_MAX_PAYLOAD_BYTES
from tests.support.workers import ROOT, WorkerProcess

KEYS = queue_keys("default", DEFAULT_PREFIX)
WELL_FORMED_ID = re.compile(rb"^[A-Za-z0-9_.:-]+$")
KNOWN_STATES = ("queued", "scheduled", "prefetched", "running", "succeeded", "failed",
                "cancelled", "dead")


@dataclass
class Entry:
    """One entry to write: an id pushed on a ready list, with this task record (or none)."""

    kind: str
    task_id: bytes
    record: dict[str, bytes] | None
    expect: str = "dead"  # the state it must end in
    priority: int = 0  # the ready list it is pushed on
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def stored_id(self) -> bytes:
        # The claim script files a malformed raw id under its SHA-1 (see claim.lua).
        if len(self.task_id) > 128 or not WELL_FORMED_ID.match(self.task_id):
            return b"malformed-" + hashlib.sha1(self.task_id).hexdigest().encode()
        return self.task_id


def _record(name: bytes = b"noop", payload: bytes = b'{"args":[1],"kwargs":{}}',
            **fields: bytes) -> dict[str, bytes]:
    return {"name": name, "payload": payload, "state": b"queued", "prio": b"0",
            "attempts": b"0", **fields}


def _new_id() -> bytes:
    return uuid.uuid4().hex.encode()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
# JSON that is valid but not {"args": [...], "kwargs": {...}}.
wrong_shapes = st.one_of(
    json_values.filter(lambda v: not isinstance(v, dict)),
    st.fixed_dictionaries({"args": json_values.filter(lambda v: not isinstance(v, list))}),
    st.fixed_dictionaries({"kwargs": json_values.filter(lambda v: not isinstance(v, dict))}),
).map(lambda v: json.dumps(v).encode())
not_json = st.binary(min_size=1, max_size=200).filter(lambda b: not _is_json(b))


def _is_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except ValueError:
        return False
    return True


@st.composite
def bad_entries(draw: st.DrawFn) -> Entry:
    kind = draw(st.sampled_from([
        "orphan", "not_json", "wrong_shape", "huge", "unknown_name", "missing_fields",
        "unknown_state", "bad_arguments", "bad_priority_field", "bad_attempts_field",
    ]))
    task_id = _new_id()
    if kind == "orphan":
        raw = draw(st.binary(min_size=0, max_size=300))
        return Entry(kind, raw + task_id, None, priority=draw(st.integers(0, 9)))
    if kind == "not_json":
        return Entry(kind, task_id, _record(payload=draw(not_json)))
    if kind == "wrong_shape":
        return Entry(kind, task_id, _record(payload=draw(wrong_shapes)))
    if kind == "huge":
        size = DEFAULT_MAX_PAYLOAD_BYTES + draw(st.integers(1, 1000))
        return Entry(kind, task_id, _record(payload=b'{"args":["' + b"x" * size + b'"]}'))
    if kind == "unknown_name":
        name = draw(st.binary(max_size=300).filter(lambda n: n not in (b"noop", b"echo")))
        return Entry(kind, task_id, _record(name=name))
    if kind == "missing_fields":
        record = _record()
        for name in draw(st.sampled_from([["name"], ["payload"], ["name", "payload"],
                                          ["name", "prio", "attempts"]])):
            del record[name]
        return Entry(kind, task_id, record)
    if kind == "unknown_state":
        state = draw(st.binary(min_size=1, max_size=20).filter(
            lambda s: s.decode(errors="replace") not in KNOWN_STATES))
        return Entry(kind, task_id, _record(state=state))
    if kind == "bad_arguments":
        # Valid JSON of the right shape that the task cannot take: a TypeError in the
        # call, recorded like any failure of the task (retries=0, so dead-lettered).
        payload = b'{"args":[1,2,3],"kwargs":{"no_such_parameter":true}}'
        return Entry(kind, task_id, _record(payload=payload))
    if kind == "bad_priority_field":
        prio = draw(st.sampled_from([b"abc", b"-1", b"10", b"99", b"1e309", b"nan", b"", b"4.5"]))
        return Entry(kind, task_id, _record(prio=prio), expect="succeeded",
                     priority=draw(st.integers(0, 9)))
    attempts = draw(st.sampled_from([b"abc", b"-5", b"", b"nan", b"inf", b"2.5", b"1e3"]))
    # A count past every retry allowance reads as a task that keeps losing its lease.
    expect = "dead" if attempts == b"1e3" else "succeeded"
    return Entry(kind, task_id, _record(attempts=attempts), expect=expect)


@dataclass
class FuzzEnv:
    conn: redis.Redis
    worker: WorkerProcess


@pytest.fixture(scope="module")
def fuzz_env() -> Iterator[FuzzEnv]:
    with EmbeddedRedis() as server:
        worker = WorkerProcess(server.url, worker_id="fuzz-worker",
                               args=["--concurrency", "8", "--lease-seconds", "5"])
        try:
            worker.wait_started()
            with redis.Redis.from_url(server.url) as conn:
                yield FuzzEnv(conn, worker)
        finally:
            worker.close()


def _write(conn: redis.Redis, entries: list[Entry]) -> bytes:
    """Writes the entries and then one good task; returns the good task's id."""
    good = Entry("good", _new_id(), _record(), expect="succeeded")
    with conn.pipeline(transaction=False) as pipe:
        for entry in [*entries, good]:
            if entry.record is not None:
                pipe.hset(_task_key(entry.task_id), mapping=entry.record)
            pipe.rpush(KEYS.ready[entry.priority], entry.task_id)
        pipe.publish(KEYS.wake_channel, "")
        pipe.execute()
    return good.task_id


def _task_key(task_id: bytes) -> bytes:
    return KEYS.prefix.encode() + b"t:" + task_id


def _wait_settled(conn: redis.Redis, entries: list[Entry], good_id: bytes,
                  worker: WorkerProcess, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert worker.process.poll() is None, "worker died:\n" + worker.output()
        states = [conn.hget(_task_key(e.stored_id), "state") for e in entries]
        if conn.hget(_task_key(good_id), "state") == b"succeeded" and all(
            state == e.expect.encode() for state, e in zip(states, entries, strict=True)
        ):
            return
        time.sleep(0.02)
    raise AssertionError(
        f"not settled: {[(e.kind, e.expect, s) for e, s in zip(entries, states, strict=True)]}"
        f"\n{worker.output()}"
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.data_too_large])
@given(entries=st.lists(bad_entries(), min_size=1, max_size=4))
def test_malformed_entries_are_dead_lettered_and_the_worker_goes_on(
    fuzz_env: FuzzEnv, entries: list[Entry]
) -> None:
    conn = fuzz_env.conn
    good_id = _write(conn, entries)
    # The good task written after them runs: the worker neither crashed nor stalled.
    _wait_settled(conn, entries, good_id, fuzz_env.worker)
    dead = set(conn.zrange(KEYS.dead, 0, -1))
    for entry in entries:
        if entry.expect != "dead":
            continue
        assert entry.stored_id in dead, entry.kind
        error, reason = conn.hmget(_task_key(entry.stored_id), ["error", "reason"])
        message = json.loads(error)["message"] if error else (reason or b"").decode()
        assert message, f"{entry.kind}: dead-lettered without a reason"


def test_dlq_commands_handle_whatever_the_fuzzing_left(fuzz_env: FuzzEnv) -> None:
    url = fuzz_env.conn.get_connection_kwargs()
    redis_url = f"redis://{url['host']}:{url['port']}/0"
    dead_count = fuzz_env.conn.zcard(KEYS.dead)
    assert dead_count > 0

    def corral(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "corral", "--redis-url", redis_url, *args],
                              cwd=ROOT, capture_output=True, text=True, timeout=60)

    listed = corral("dlq", "list", "--limit", "100000")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert len(lines) == dead_count
    assert all(line.rstrip().split("  ")[-1].strip(": ") for line in lines)
    inspected = corral("inspect")
    assert inspected.returncode == 0, inspected.stderr
    purged = corral("dlq", "purge", "--all")
    assert purged.returncode == 0 and fuzz_env.conn.zcard(KEYS.dead) == 0
    assert fuzz_env.worker.process.poll() is None
