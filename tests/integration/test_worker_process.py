"""Real `corral worker` processes: signals, leases, endpoints, logs."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
import urllib.request
from collections.abc import Awaitable, Callable

import pytest
import redis.asyncio

from corral import Client, Enqueue, TaskFailed
from corral.depths import read_queue_depths
from corral.keys import DEFAULT_PREFIX, queue_keys
from tests.support.workers import WorkerProcess


def _start(workers: list[WorkerProcess], url: str, *args: str, worker_id: str = "w1"
           ) -> WorkerProcess:
    worker = WorkerProcess(url, args=args, worker_id=worker_id)
    workers.append(worker)
    return worker.wait_started()


async def _states(client: Client, handles: list) -> list[str]:  # type: ignore[type-arg]
    return [await h.status() for h in handles]


async def test_sigkill_tasks_return_after_lease_and_run_elsewhere(
    client: Client, redis_url: str, redis_conn: redis.asyncio.Redis,
    workers: list[WorkerProcess],
) -> None:
    victim = _start(workers, redis_url, "--lease-seconds", "2", "--concurrency", "5",
                    worker_id="victim")
    handles = await client.enqueue_many(
        [Enqueue("count_run", [f"t{i}", 1.5]) for i in range(5)]
    )
    await _until(lambda: _all_running(handles))
    victim.kill()
    _start(workers, redis_url, "--lease-seconds", "2", worker_id="rescuer")
    results = await asyncio.gather(*(h.result(timeout=30) for h in handles))
    assert results == [f"t{i}" for i in range(5)]
    for handle in handles:
        record = await redis_conn.hgetall(queue_keys("default", DEFAULT_PREFIX).task(handle.id))
        assert record[b"attempts"] == b"2"


async def test_sigterm_hands_back_prefetched_and_finishes_running(
    client: Client, redis_url: str, redis_conn: redis.asyncio.Redis,
    workers: list[WorkerProcess],
) -> None:
    worker = _start(workers, redis_url, "--concurrency", "2", "--batch-size", "10",
                    "--grace-seconds", "10")
    handles = await client.enqueue_many(
        [Enqueue("count_run", [f"t{i}", 1.0]) for i in range(8)]
    )
    await _until(lambda: _all_running(handles[:2]))
    depths = (await read_queue_depths(redis_conn, ["default"]))["default"]
    assert depths.in_flight == 8  # two running, six prefetched
    assert worker.terminate() == 0
    states = await _states(client, handles)
    assert states[:2] == ["succeeded", "succeeded"]  # ran to the end inside the grace period
    assert states[2:] == ["queued"] * 6  # handed back at once, not after a lease
    depths = (await read_queue_depths(redis_conn, ["default"]))["default"]
    assert depths.in_flight == 0 and depths.ready == 6
    for handle in handles[2:]:
        record = await redis_conn.hgetall(queue_keys("default", DEFAULT_PREFIX).task(handle.id))
        assert record[b"attempts"] == b"0"  # a prefetched task's attempt is given back


async def test_sigterm_past_grace_cancels_and_requeues(
    client: Client, redis_url: str, redis_conn: redis.asyncio.Redis,
    workers: list[WorkerProcess],
) -> None:
    worker = _start(workers, redis_url, "--grace-seconds", "0.5")
    handle = await client.enqueue("sleep", [60, "cleaned-up"])
    await _until(lambda: _all_running([handle]))
    assert worker.terminate(timeout_s=15) == 0
    assert await handle.status() == "queued"
    assert await redis_conn.lrange("test:cleanup", 0, -1) == [b"cleaned-up"]
    _start(workers, redis_url, worker_id="w2")
    key = queue_keys("default", DEFAULT_PREFIX).task(handle.id)
    assert await redis_conn.hget(key, "attempts") in (
        b"1", b"2")


async def test_second_signal_exits_at_once(client: Client, redis_url: str,
                                           workers: list[WorkerProcess]) -> None:
    worker = _start(workers, redis_url, "--grace-seconds", "60")
    handle = await client.enqueue("sleep", [60])
    await _until(lambda: _all_running([handle]))
    worker.process.send_signal(signal.SIGTERM)
    await _until(_logged(worker, "SIGTERM: draining"))  # the second signal is the second
    worker.process.send_signal(signal.SIGINT)
    assert worker.wait(10) != 0
    assert any("second SIGINT: exiting at once" in line for line in worker.lines)


async def test_endpoints_metrics_and_json_logs(
    client: Client, redis_url: str, workers: list[WorkerProcess]
) -> None:
    worker = _start(workers, redis_url, "--log-format", "json", "--queues", "a=2,default=1")
    handle = await client.enqueue("sleep", [30])
    fail = await client.enqueue("fail_no_dlq")
    await _until(lambda: _all_running([handle]))
    with pytest.raises(TaskFailed):
        await fail.result(timeout=10)
    base = f"http://127.0.0.1:{worker.metrics_port}"
    metrics = _get(f"{base}/metrics")
    assert 'corral_active_tasks{queue="default"} 1.0' in metrics
    assert 'corral_active_tasks{queue="a"} 0.0' in metrics
    for name in ["corral_prefetched_tasks", "corral_tasks_total", "corral_task_duration_seconds",
                 "corral_task_wait_seconds", "corral_queue_backlog",
                 "corral_event_loop_lag_seconds"]:
        assert name in metrics
    assert 'outcome="failed"' in metrics
    assert json.loads(_get(f"{base}/healthz"))["ok"] is True
    assert json.loads(_get(f"{base}/readyz"))["ok"] is True
    dump = _get(f"{base}/debug/tasks")
    assert _task_dump(dump, "corral:fetch:default")
    # The task's whole await chain, down to the app's `await asyncio.sleep(...)`.
    chain = _task_dump(dump, f"corral:task:sleep:{handle.id}")
    assert any(re.search(r"tests/apps/basic\.py:\d+ in sleep$", line) for line in chain), chain
    assert re.search(r"asyncio/tasks\.py:\d+ in sleep$", chain[-2]), chain
    assert chain[-1] == "  waiting on a Future", chain
    await handle.cancel()
    assert worker.terminate() == 0
    records = [json.loads(line) for line in worker.lines if line.startswith("{")]
    assert records and all("level" in r and "message" in r for r in records)
    assert any(r.get("task_id") == fail.id for r in records)


async def test_debug_endpoint_can_be_turned_off(redis_url: str,
                                                workers: list[WorkerProcess]) -> None:
    worker = _start(workers, redis_url, "--no-debug-endpoint")
    with pytest.raises(urllib.error.HTTPError):
        _get(f"http://127.0.0.1:{worker.metrics_port}/debug/tasks")


async def test_worker_survives_a_redis_outage(
    client: Client, redis_url: str, redis_server: object, workers: list[WorkerProcess],
) -> None:
    worker = _start(workers, redis_url)
    first = await client.enqueue("noop", [1])
    assert await first.result(timeout=10) == 1
    redis_server.stop()  # type: ignore[attr-defined]
    await _until(_logged(worker, "redis unreachable"))
    redis_server.start()  # type: ignore[attr-defined]
    async with Client.from_url(redis_url) as fresh:
        second = await fresh.enqueue("noop", [2])
        assert await second.result(timeout=20) == 2
    unreachable = [line for line in worker.lines if "redis unreachable" in line]
    assert 1 <= len(unreachable) <= 3  # logged once per outage (per loop that noticed first)
    assert any("reachable again" in line for line in worker.lines)


def _task_dump(dump: str, name: str) -> list[str]:
    """The lines a /debug/tasks dump has for one task: its frames, then what it waits on."""
    for block in dump.split("\n\n"):
        header, *lines = block.splitlines()
        if header.startswith(f"{name} ["):
            return lines
    raise AssertionError(f"no task {name} in the dump:\n{dump}")


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


async def _all_running(handles: list) -> bool:  # type: ignore[type-arg]
    return all([await h.status() == "running" for h in handles])


def _logged(worker: WorkerProcess, text: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return any(text in line for line in worker.lines)

    return check


async def _until(check: object, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")

