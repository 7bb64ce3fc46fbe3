"""Deciding how an attempt ends, from what it raised (or how the worker stopped it) and
the task's settings. Pure code, no I/O: the runtime records what this decides."""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple

from corral.app import TaskDef
from corral_worker.policy import after_failure


class Finish(Enum):
    """How an attempt ends: finish.lua's outcome code, and the ``outcome`` label of
    ``corral_tasks_total``. Plain attributes, not ``value``: read once per task."""

    SUCCEEDED = ("s", "succeeded")
    FAILED = ("f", "failed")
    DEAD = ("d", "dead")
    CANCELLED = ("c", "cancelled")
    RETRY = ("r", "retried")
    REQUEUE = ("q", "requeued")

    def __init__(self, code: str, label: str) -> None:
        self.code = code
        self.label = label


class Stop(Enum):
    """Why the worker itself cancelled a running task."""

    TIMEOUT = "timeout"
    REQUEST = "cancel"  # handle.cancel()
    SHUTDOWN = "shutdown"
    LEASE_LOST = "lease_lost"  # the lease may have passed to another worker


@dataclass(frozen=True, slots=True)
class TaskError:
    type_name: str
    message: str
    traceback: str = ""


class Verdict(NamedTuple):  # a tuple: made once per task
    finish: Finish
    error: TaskError | None = None
    ttl_ms: int = 0
    delay_ms: int = 0
    timed_out: bool = False


def decide(
    task: TaskDef,
    attempts: int,
    raised: TaskError | None,
    stopped: Stop | None,
    rand: random.Random | None = None,
) -> Verdict:
    """The verdict on attempt number ``attempts`` of ``task``. ``raised`` is what the task
    raised (None: it returned), the worker's own cancellation included; ``stopped`` is
    why the worker cancelled it (None: it did not). A timeout and a cancel request
    stand whatever the task then did with the cancellation; a task that returned a
    result anyway during shutdown has succeeded."""
    ttl_ms = int(task.result_ttl_s * 1000)
    if stopped is None and raised is None:  # the common case first
        return Verdict(Finish.SUCCEEDED, None, ttl_ms)
    if stopped is Stop.TIMEOUT:
        timeout = TaskError("TimeoutError", f"task exceeded its timeout of {task.timeout_s} s")
        return _failed(task, attempts, timeout, rand, timed_out=True)
    if stopped is Stop.REQUEST:
        return Verdict(Finish.CANCELLED, TaskError("CancelledError", "cancelled on request"),
                       ttl_ms)
    if raised is None:
        return Verdict(Finish.SUCCEEDED, ttl_ms=ttl_ms)
    if stopped is not None:  # shutdown or a lost lease: the task runs again elsewhere
        return Verdict(Finish.REQUEUE)
    return _failed(task, attempts, raised, rand)


def _failed(
    task: TaskDef,
    attempts: int,
    error: TaskError,
    rand: random.Random | None,
    timed_out: bool = False,
) -> Verdict:
    after = after_failure(attempts, task.retries, task.dead_letter, task.retry_backoff_s,
                          task.retry_backoff_max_s, rand)
    if after.outcome == "retry":
        return Verdict(Finish.RETRY, error, delay_ms=int(after.delay_s * 1000),
                       timed_out=timed_out)
    if after.outcome == "dead":  # kept in the dead-letter queue for the task's dead_ttl
        return Verdict(Finish.DEAD, error, int(task.dead_ttl_s * 1000), timed_out=timed_out)
    return Verdict(Finish.FAILED, error, int(task.result_ttl_s * 1000), timed_out=timed_out)
