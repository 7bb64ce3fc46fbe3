"""Task code that misbehaves, and leases lost under the worker's feet (issue 9)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
import redis.asyncio
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from corral import Client, TaskFailed
from corral.keys import DEFAULT_PREFIX, queue_keys
from corral_worker import Worker
from tests.apps.hostile import app
from tests.chaos.proxy import CutProxy
from tests.support.inproc import running_worker
from tests.support.workers import WorkerProcess

KEYS = queue_keys("default", DEFAULT_PREFIX)


async def _until(check: Callable[[], Awaitable[bool]], timeout_s: float = 20.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not await check():  # noqa: ASYNC110 - polls Redis, not a local flag
            await asyncio.sleep(0.02)


def _samples(worker: Worker, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    text = generate_latest(worker.registry).decode()
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


async def _heartbeats(redis_conn: redis.asyncio.Redis, worker_id: str, count: int) -> None:
    """Returns once the worker has sent ``count`` more heartbeats."""
    key = KEYS.worker(worker_id)
    for _ in range(count):
        before = await redis_conn.hget(key, "heartbeat_ms")

        async def moved(before: bytes | None = before) -> bool:
            return await redis_conn.hget(key, "heartbeat_ms") not in (None, before)

        await _until(moved)


async def test_task_raising_cancelled_error_itself_is_a_failure(
    client: Client, redis_url: str
) -> None:
    handle = await client.enqueue("raises_cancelled")
    async with running_worker(redis_url, app):
        with pytest.raises(TaskFailed) as info:
            await handle.result(timeout=20)
    assert info.value.type == "CancelledError" and info.value.state == "dead"
    assert (await client.redis.hget(KEYS.task(handle.id), "attempts")) == b"2"  # retried once


async def test_timeout_swallowed_by_the_task_is_still_a_timeout(
    client: Client, redis_url: str
) -> None:
    handle = await client.enqueue("swallows_timeout")
    async with running_worker(redis_url, app) as worker:
        with pytest.raises(TaskFailed) as info:
            await handle.result(timeout=20)
        tasks = _samples(worker, "corral_tasks_total")
        timeouts = _samples(worker, "corral_task_timeouts_total")
    assert info.value.type == "TimeoutError" and info.value.state == "dead"
    # One attempt, counted once by what became of it; the timeout on a counter of its own.
    labels = (("outcome", "dead"), ("queue", "default"), ("task", "swallows_timeout"))
    assert tasks == {labels: 1.0}
    assert timeouts == {(("queue", "default"), ("task", "swallows_timeout")): 1.0}


async def test_drain_requeues_a_task_that_swallows_cancellation_and_exits(
    client: Client, redis_url: str, redis_conn: redis.asyncio.Redis
) -> None:
    handle = await client.enqueue("swallows_forever")
    worker = WorkerProcess(redis_url, app="tests.apps.hostile:app",
                           args=["--grace-seconds", "0.5"]).wait_started()
    try:
        await _until(lambda: redis_conn.exists("test:started"))
        assert worker.terminate(timeout_s=30) == 0  # grace, then a short hard deadline
    finally:
        worker.close()
    assert await handle.status() == "queued"
    assert await redis_conn.lrange(KEYS.ready[0], 0, -1) == [handle.id.encode()]
    assert "still running after" in worker.output()


async def test_prefetched_task_whose_lease_was_taken_over_never_starts(
    client: Client, redis_url: str, redis_conn: redis.asyncio.Redis
) -> None:
    async with running_worker(redis_url, app, concurrency=1, batch_size=4, lease_s=3):
        blocker = await client.enqueue("sleep", [60])
        await _until(lambda: _is(redis_conn, blocker.id, "running"))
        taken = await client.enqueue("record", ["taken"])
        await _until(lambda: _is(redis_conn, taken.id, "prefetched"))  # claimed, not started
        await redis_conn.hset(KEYS.task(taken.id), "token", "another-worker:1")
        await _heartbeats(redis_conn, "in-process", 2)
        assert await blocker.cancel()
        marker = await client.enqueue("record", ["marker"])
        assert await marker.result(timeout=20) == "marker"
    assert await redis_conn.lrange("test:order", 0, -1) == [b"marker"]


async def test_same_task_claimed_again_keeps_each_copy_apart(
    client: Client, redis_url: str, redis_conn: redis.asyncio.Redis
) -> None:
    async with running_worker(redis_url, app, concurrency=2, lease_s=3):
        handle = await client.enqueue("sleep", [60])
        await _until(lambda: _is(redis_conn, handle.id, "running"))
        # Its lease runs out and it is queued again (what heartbeat.lua does), and this
        # same worker claims it once more: a second copy, under a new token.
        await redis_conn.hset(KEYS.task(handle.id), "state", "queued")
        await redis_conn.hdel(KEYS.task(handle.id), "token")
        await redis_conn.zrem(KEYS.leased, handle.id)
        await redis_conn.lpush(KEYS.ready[0], handle.id)
        await redis_conn.publish(KEYS.wake_channel, "")
        await _until(lambda: _field(redis_conn, handle.id, "attempts", b"2"))
        assert await handle.cancel()
        with pytest.raises(TaskFailed):
            await handle.result(timeout=20)

        await _heartbeats(redis_conn, "in-process", 2)
        entry = await redis_conn.hgetall(KEYS.worker("in-process"))
        # The first copy stopped too, and nothing is left held.
        assert (entry[b"running"], entry[b"in_flight"]) == (b"0", b"0")


async def test_sync_task_waiting_for_a_thread_is_not_charged_the_wait(
    client: Client, redis_url: str, redis_conn: redis.asyncio.Redis
) -> None:
    async with running_worker(redis_url, app, concurrency=2) as worker:
        stuck = [await client.enqueue("blocks_thread") for _ in range(2)]
        for handle in stuck:
            with pytest.raises(TaskFailed) as info:
                await handle.result(timeout=20)
            assert info.value.type == "TimeoutError"
        assert _samples(worker, "corral_stuck_threads") == {(): 2.0}
        quick = await client.enqueue("quick_sync")
        # Both threads are still held: it waits for one, and that wait is not its run time.
        with pytest.raises(TimeoutError):
            await quick.result(timeout=1.5)
        await redis_conn.rpush("test:release", "1", "2")
        assert await quick.result(timeout=20) == "quick"

        async def unstuck() -> bool:
            return _samples(worker, "corral_stuck_threads") == {(): 0.0}

        await _until(unstuck)


async def test_readyz_fails_while_redis_calls_hang_on_a_half_open_connection(
    redis_url: str, redis_conn: redis.asyncio.Redis
) -> None:
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    proxy = await CutProxy(port).start()
    try:
        # A long socket read timeout (or none, as redis-py had before 8.0) must not be
        # what bounds the worker's calls.
        url = proxy.url() + "?socket_timeout=600"
        async with running_worker(url, app, lease_s=3, metrics_port=0) as worker, \
                aiohttp.ClientSession() as http:
            readyz = f"http://127.0.0.1:{worker.metrics_port}/readyz"

            async def ready(expected: bool) -> bool:
                async with http.get(readyz) as response:
                    return (response.status == 200) is expected

            await _until(lambda: ready(True))
            proxy.blackhole()  # connections stay open; nothing arrives
            await _until(lambda: ready(False))  # each Redis call has a deadline
            proxy.heal()
            await _until(lambda: ready(True))
            await _heartbeats(redis_conn, "in-process", 1)  # and the worker goes on
    finally:
        await proxy.close()


async def _is(redis_conn: redis.asyncio.Redis, task_id: str, state: str) -> bool:
    return await _field(redis_conn, task_id, "state", state.encode())


async def _field(redis_conn: redis.asyncio.Redis, task_id: str, name: str, value: bytes
                 ) -> bool:
    return bool(await redis_conn.hget(KEYS.task(task_id), name) == value)
