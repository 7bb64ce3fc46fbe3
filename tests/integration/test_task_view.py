"""What one task shows about itself, with real `corral worker` processes: its status
while prefetched and once started, and its attempt history (`corral show`, the
dashboard's `/api/tasks/{id}`)."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator

import pytest

from corral import Client, Enqueue, TaskFailed, TaskHandle
from corral.keys import DEFAULT_PREFIX, queue_keys
from tests.integration.test_cli import corral
from tests.support.workers import WorkerProcess


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.close()


async def _until(check: Callable[[], Awaitable[bool]], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def _states(handles: list[TaskHandle[float]]) -> Counter[str]:
    return Counter([str(await h.status()) for h in handles])


async def test_claimed_tasks_are_prefetched_until_they_start(
    client: Client, redis_url: str, workers: list[WorkerProcess]
) -> None:
    workers.append(WorkerProcess(redis_url, args=["--concurrency", "10"]).wait_started())
    handles: list[TaskHandle[float]] = await client.enqueue_many(
        [Enqueue("sleep", [120]) for _ in range(12)])

    async def ten_running() -> bool:
        return (await _states(handles))["running"] == 10

    await _until(ten_running)
    assert await _states(handles) == {"running": 10, "prefetched": 2}
    waiting = [h for h in handles if await h.status() == "prefetched"]
    # Two slots free up: the prefetched tasks start, and their records say so.
    running = [h for h in handles if await h.status() == "running"]
    for handle in running[:2]:
        assert await handle.cancel()

    async def started() -> bool:
        return all([await h.status() == "running" for h in waiting])

    await _until(started)
    assert await _states(handles) == {"running": 10, "cancelled": 2}
    assert corral("status", waiting[0].id, url=redis_url).stdout.strip() == "running"


async def test_show_lists_every_attempt_with_its_worker_and_traceback(
    client: Client, redis_url: str, workers: list[WorkerProcess]
) -> None:
    workers.append(WorkerProcess(redis_url, worker_id="show-worker").wait_started())
    handle = await client.enqueue("flaky", [2])
    assert await handle.result(timeout=30) == "succeeded on attempt 3"

    shown = corral("show", handle.id, "--json", url=redis_url)
    assert shown.returncode == 0, shown.stderr
    record = json.loads(shown.stdout)
    assert (record["name"], record["queue"], record["state"], record["attempts"]) == (
        "flaky", "default", "succeeded", 3)
    assert record["result"] == '"succeeded on attempt 3"'
    history = record["history"]
    assert [a["number"] for a in history] == [1, 2, 3]
    assert [a["outcome"] for a in history] == ["retried", "retried", "succeeded"]
    assert [a["error_type"] for a in history] == ["ValueError", "ValueError", ""]
    assert all(a["worker"].startswith("show-worker/") for a in history)
    for n in (1, 2):
        attempt = history[n - 1]
        assert attempt["error_message"] == f"attempt {n} of 2 planned failures"
        assert "Traceback (most recent call last)" in attempt["traceback"]
        assert f"ValueError: attempt {n} of 2 planned failures" in attempt["traceback"]
    assert history[2]["traceback"] == ""
    assert all(0 < a["started_ms"] <= a["finished_ms"] for a in history)
    assert history[0]["finished_ms"] <= history[1]["started_ms"]

    text = corral("show", handle.id, url=redis_url)
    assert text.returncode == 0, text.stderr
    assert "status:      succeeded" in text.stdout
    assert "attempt 1: retried on show-worker/" in text.stdout
    assert "attempt 3: succeeded on show-worker/" in text.stdout
    assert "| ValueError: attempt 2 of 2 planned failures" in text.stdout

    unknown = corral("show", "0123abcd", url=redis_url)
    assert unknown.returncode == 1 and unknown.stdout == ""
    assert unknown.stderr == ("corral show: error: no task 0123abcd in queue 'default' "
                              "(unknown or expired)\n")


async def test_history_keeps_the_latest_attempts_only(
    client: Client, redis_url: str, workers: list[WorkerProcess]
) -> None:
    from corral.defaults import ATTEMPTS_KEPT

    workers.append(WorkerProcess(redis_url).wait_started())
    handle = await client.enqueue("fail", ["boom"])  # 3 attempts, then dead
    with pytest.raises(TaskFailed, match="boom"):
        await handle.result(timeout=30)
    key = queue_keys("default", DEFAULT_PREFIX).task(handle.id)
    # Pretend that many attempts ran before: the next entries push the oldest out.
    await client.redis.hdel(key, "attempt:1", "attempt:2", "attempt:3")
    await client.redis.hset(key, "attempt_seq", 100)
    for seq in range(100 - ATTEMPTS_KEPT + 1, 101):
        await client.redis.hset(key, f"attempt:{seq}", "{}")
    assert corral("dlq", "requeue", handle.id, url=redis_url).returncode == 0
    with pytest.raises(TaskFailed, match="boom"):
        await handle.result(timeout=30)
    fields = [f for f in await client.redis.hkeys(key) if f.startswith(b"attempt:")]
    assert sorted(fields) == sorted(f"attempt:{seq}".encode() for seq in range(94, 104))
    record = json.loads(corral("show", handle.id, "--json", url=redis_url).stdout)
    assert [a["outcome"] for a in record["history"][-3:]] == ["retried", "retried", "dead"]
