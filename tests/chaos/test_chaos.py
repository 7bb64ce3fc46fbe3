"""Chaos, short form: 10,000 tasks on four worker processes while workers are
killed at random and Redis restarts once (``bench/chaos.py`` is the long form).

And a worker cut off from Redis for longer than its lease: it stops the task
itself before its lease can pass to another worker, and whatever it reports
afterwards with its old lease is refused and counted."""

from __future__ import annotations

import asyncio
import os
import signal
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import redis.asyncio

from corral.client import Client, Enqueue
from corral.embedded import EmbeddedRedis
from tests.chaos.harness import ChaosConfig, run_chaos
from tests.chaos.proxy import CutProxy
from tests.support.workers import WorkerProcess

LEASE_S = 2.0
WORKER_ARGS = ["--lease-seconds", str(LEASE_S), "--concurrency", "4", "--batch-size", "1"]


async def test_sigkill_loses_nothing_and_duplicates_only_what_was_in_flight(
    chaos_redis: EmbeddedRedis,
) -> None:
    report = await run_chaos(
        chaos_redis,
        ChaosConfig(tasks=10_000, kill_signal="SIGKILL", task_sleep_s=0.1, lease_s=4.0),
    )
    print(report.summary())
    assert report.kills and report.redis_restart is not None
    assert report.lost == [], report.lost_states
    # Only tasks in flight at a fault may run twice: those a killed worker held, and
    # (if the restart outlasted the lease's margin) those running when Redis stopped.
    assert report.duplicated <= report.in_flight_at_faults
    assert report.unexplained_duplicates == []
    assert all(kill.recovery_s is not None for kill in report.kills)


async def test_sigterm_drains_cleanly_no_loss_no_duplicates(chaos_redis: EmbeddedRedis) -> None:
    # A lease well beyond the Redis restart's outage: no lease runs out, so nothing
    # but a kill could cause a second run, and a clean drain causes none.
    report = await run_chaos(
        chaos_redis,
        ChaosConfig(tasks=10_000, kill_signal="SIGTERM", task_sleep_s=0.1, lease_s=10.0),
    )
    print(report.summary())
    assert report.kills and report.redis_restart is not None
    assert report.hung_workers == 0
    assert report.lost == [], report.lost_states
    assert report.duplicated == 0, report.runs_by_pid


# -- a worker cut off from Redis for longer than its lease ---------------------------------


@pytest.fixture
async def conn(chaos_redis: EmbeddedRedis) -> AsyncIterator[redis.asyncio.Redis]:
    if chaos_redis.process is None:
        chaos_redis.start()
    c = redis.asyncio.Redis.from_url(chaos_redis.url)
    await c.flushall()
    yield c
    await c.aclose()


def _markers(marker_dir: Path, key: str) -> dict[str, list[tuple[float, int]]]:
    """``{"start": [(time, pid), ...], "cancelled": [...], "end": [...]}`` for one task key."""
    found: dict[str, list[tuple[float, int]]] = {"start": [], "cancelled": [], "end": []}
    for path in marker_dir.glob(f"{key}.*"):
        kind = path.name.rsplit(".", 1)[1]
        when, pid = path.read_text().split()
        found[kind].append((float(when), int(pid)))
    for entries in found.values():
        entries.sort()
    return found


async def _until(check: Callable[[], object], timeout_s: float = 30.0) -> None:
    async with asyncio.timeout(timeout_s):
        while True:
            if check():
                return
            await asyncio.sleep(0.05)


def _metric(worker: WorkerProcess, name: str) -> float:
    body = urllib.request.urlopen(f"http://127.0.0.1:{worker.metrics_port}/metrics").read()
    for line in body.decode().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no metric {name}")


async def _start(url: str, worker_id: str, args: list[str] = WORKER_ARGS) -> WorkerProcess:
    worker = WorkerProcess(url, app="tests.chaos.app:app", args=args, worker_id=worker_id)
    try:
        return await asyncio.to_thread(worker.wait_started)
    except BaseException:
        worker.close()
        raise


async def _succeeded(client: Client, task_id: str) -> None:
    assert await client.result(task_id, timeout=60.0) in ("x", "y", "z")


async def test_partitioned_worker_stops_its_task_before_another_takes_it(
    chaos_redis: EmbeddedRedis, conn: redis.asyncio.Redis, tmp_path: Path
) -> None:
    proxy = await CutProxy(chaos_redis.port).start()
    # One task running (x) and two prefetched (y, z) on the worker that will be cut off.
    cut_off = await _start(proxy.url(), "cut-off", [
        "--lease-seconds", str(LEASE_S), "--concurrency", "1", "--batch-size", "3"])
    other: WorkerProcess | None = None
    try:
        async with Client.from_url(chaos_redis.url) as client:
            handles = await client.enqueue_many([
                Enqueue("hold", kwargs={"task_key": key, "seconds": 6.0,
                                        "marker_dir": str(tmp_path)})
                for key in ("x", "y", "z")
            ])
            await _until(lambda: _markers(tmp_path, "x")["start"])
            other = await _start(chaos_redis.url, "other")
            proxy.blackhole()
            await _until(lambda: len(_markers(tmp_path, "x")["start"]) == 2)
            marks = _markers(tmp_path, "x")
            (_, first_pid), (second_start, second_pid) = marks["start"]
            assert (first_pid, second_pid) == (cut_off.process.pid, other.process.pid)
            # The cut-off worker cancelled its run before the other worker started one.
            assert [pid for _, pid in marks["cancelled"]] == [first_pid]
            assert marks["cancelled"][0][0] < second_start

            proxy.heal()
            for handle in handles:
                await _succeeded(client, handle.id)
            for key in ("x", "y", "z"):
                marks = _markers(tmp_path, key)
                assert [pid for _, pid in marks["end"]] == [second_pid]
            # It did not start its prefetched tasks while it could not renew their leases.
            for key in ("y", "z"):
                assert [pid for _, pid in _markers(tmp_path, key)["start"]] == [second_pid]
            # Its late reports, made with lost leases (x stopped, y and z handed back),
            # were refused and counted.
            await _until(lambda: _metric(cut_off, "corral_lease_takeovers_total") == 3)
    finally:
        for worker in (cut_off, other):
            if worker is not None:
                worker.close()
        await proxy.close()


async def test_paused_worker_duplicate_is_refused_and_counted(
    chaos_redis: EmbeddedRedis, conn: redis.asyncio.Redis, tmp_path: Path
) -> None:
    # A frozen process (SIGSTOP; a VM or GC pause) cannot stop anything while frozen.
    paused = await _start(chaos_redis.url, "paused")
    other: WorkerProcess | None = None
    try:
        async with Client.from_url(chaos_redis.url) as client:
            handle = await client.enqueue("hold", kwargs={
                "task_key": "x", "seconds": 6.0, "marker_dir": str(tmp_path)})
            await _until(lambda: _markers(tmp_path, "x")["start"])
            other = await _start(chaos_redis.url, "other")
            os.kill(paused.process.pid, signal.SIGSTOP)
            try:
                await _until(lambda: len(_markers(tmp_path, "x")["start"]) == 2)
            finally:
                os.kill(paused.process.pid, signal.SIGCONT)
            await _succeeded(client, handle.id)
            await _until(lambda: _metric(paused, "corral_lease_takeovers_total") == 1)
            marks = _markers(tmp_path, "x")
            # Woken up, it cancelled its stale run; only the other run's result counts.
            assert [pid for _, pid in marks["cancelled"]] == [paused.process.pid]
            assert [pid for _, pid in marks["end"]] == [other.process.pid]
    finally:
        for worker in (paused, other):
            if worker is not None:
                worker.close()


async def test_redis_outage_longer_than_lease_stops_the_task_then_reruns_it(
    chaos_redis: EmbeddedRedis, conn: redis.asyncio.Redis, tmp_path: Path
) -> None:
    worker = await _start(chaos_redis.url, "alone")
    try:
        async with Client.from_url(chaos_redis.url) as client:
            handle = await client.enqueue("hold", kwargs={
                "task_key": "x", "seconds": 4 * LEASE_S, "marker_dir": str(tmp_path)})
            await _until(lambda: _markers(tmp_path, "x")["start"])
            chaos_redis.stop()
            try:
                # The worker gives the task up on its own, while Redis is still away.
                await _until(lambda: _markers(tmp_path, "x")["cancelled"])
            finally:
                chaos_redis.start()
            await _succeeded(client, handle.id)
        marks = _markers(tmp_path, "x")
        assert len(marks["start"]) == 2 and len(marks["end"]) == 1
        assert marks["cancelled"][0][0] < marks["start"][1][0]
    finally:
        worker.close()
