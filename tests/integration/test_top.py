"""`corral top` against a real Redis and a real worker: the data it gathers, the view
driven by textual's own test harness, and the real command in a tmux pseudo-terminal."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator

import pytest

from corral import Client
from corral.cli.top_app import TopApp
from corral.connection import connect
from corral.keys import DEFAULT_PREFIX, queue_keys
from corral.monitor import Monitor
from tests.integration.test_cli import corral
from tests.support.inproc import running_worker
from tests.support.terminal import Terminal
from tests.support.workers import WorkerProcess


@pytest.fixture
def worker_procs() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.close()


async def _backlog_and_a_busy_worker(redis_url: str, client: Client,
                                     workers: list[WorkerProcess]) -> None:
    """`reports`: 4 tasks at priority 7 and no worker; `default`: a worker with
    concurrency 2 running two long tasks."""
    for _ in range(4):
        await client.enqueue("report", queue="reports", priority=7)
    sleepers = [await client.enqueue("sleep", [60]) for _ in range(2)]
    workers.append(WorkerProcess(redis_url, worker_id="top-worker",
                                 args=["--concurrency", "2"]).wait_started())
    for handle in sleepers:
        while await handle.status() != "running":  # noqa: ASYNC110 - state lives in Redis
            await asyncio.sleep(0.05)


async def _until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    for _ in range(400):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never saw {what}")


async def test_monitor_reads_depths_workers_rates_and_waits(
    redis_url: str, client: Client, worker_procs: list[WorkerProcess]
) -> None:
    await _backlog_and_a_busy_worker(redis_url, client, worker_procs)
    waiting = [await client.enqueue("noop", [i], queue="later") for i in range(5)]
    redis = connect(redis_url)
    monitor = Monitor(redis)
    try:
        first = await monitor.refresh()
        queues = {r.queue: r for r in first.queues}
        assert queues["reports"].backlog == 4 and queues["reports"].ready_by_priority[7] == 4
        assert queues["later"].backlog == 5
        assert queues["default"].in_flight == 2
        assert queues["default"].finished_per_s is None  # one sample: no rate yet
        # The registry is written at each heartbeat: wait for the one after the start.
        async def registered() -> bool:
            workers = (await monitor.refresh()).workers
            return len(workers) == 1 and workers[0].running == 2

        await _until(registered, "the worker's registry entry")
        (worker,) = (await monitor.refresh()).workers
        assert (worker.worker_id, worker.concurrency, worker.in_flight) == ("top-worker", 2, 2)
        assert worker.queues == ("default",) and worker.heartbeat_age_s is not None
        async with running_worker(redis_url, queues={"later": 1}, worker_id="later-worker"):
            for handle in waiting:
                assert await handle.result(timeout=20) is not None

        async def finished() -> bool:
            view = await monitor.refresh()
            row = next(r for r in view.queues if r.queue == "later")
            return row.finished_per_s is not None and row.finished_per_s > 0

        await _until(finished, "finishes counted")
        row = next(r for r in (await monitor.refresh()).queues if r.queue == "later")
        assert row.backlog == 0 and (row.started_per_s or 0) > 0
        # Waits are ready -> claimed, from the finished tasks' own records.
        waits = sorted(await _recorded_waits_s(client, [h.id for h in waiting]))
        assert (row.wait_p50_s, row.wait_p99_s) == (waits[2], waits[4])
    finally:
        await monitor.close()
        await redis.aclose()


async def _recorded_waits_s(client: Client, ids: list[str]) -> list[float]:
    waits = []
    for task_id in ids:
        ready, started = await client.redis.hmget(queue_keys("later", DEFAULT_PREFIX).task(task_id),
                                                  ["ready_ms", "started_ms"])
        waits.append((int(started) - int(ready)) / 1000)
    return waits


def _cells(app: TopApp, table: str) -> dict[str, list[str]]:
    from textual.widgets import DataTable

    data = app.query_one(f"#{table}", DataTable)
    return {str(row.key.value): [str(c) for c in data.get_row(row.key)]
            for row in data.ordered_rows}


async def test_top_view_sorts_and_filters(
    redis_url: str, client: Client, worker_procs: list[WorkerProcess]
) -> None:
    await _backlog_and_a_busy_worker(redis_url, client, worker_procs)
    for _ in range(3):
        await client.enqueue("record", ["x"], queue="mail", priority=2)
    app = TopApp(redis_url, None, 0.2, "redis://test")
    async with app.run_test(size=(180, 40)) as pilot:
        async def both_shown() -> bool:
            await pilot.pause()
            workers = _cells(app, "workers")
            return {"reports", "default", "mail"} <= set(_cells(app, "queues")) and (
                workers.get("top-worker", [""] * 4)[3] == "2")  # running, once registered

        await _until(both_shown, "queues and workers")
        queues = _cells(app, "queues")
        assert queues["reports"][1:3] == ["4", "p7=4"]
        assert queues["default"][4] == "2"  # in flight
        worker = _cells(app, "workers")["top-worker"]
        assert worker[1:5] == ["default", "2", "2", "2"]
        assert list(_cells(app, "queues")) == ["reports", "mail", "default"]  # by backlog
        await pilot.press("s")  # in flight
        await pilot.pause()
        assert next(iter(_cells(app, "queues"))) == "default"
        assert "queues by in flight" in app.status_line
        await pilot.press("f", *"rep", "enter")
        await pilot.pause()
        assert list(_cells(app, "queues")) == ["reports"]
        assert _cells(app, "workers") == {}  # nobody serves `reports`
        await pilot.press("escape")
        await pilot.pause()
        assert len(_cells(app, "queues")) == 3
        await pilot.press("q")
    assert app.return_code in (0, None)


# A worker row's loop lag: the cell before the heartbeat's age ("0.4 s ago").
_LAG = re.compile(r"(\d+\.\d) (ms|s) +[\d.]+ (?:s|min|h) ago")


def _lag_ms(screen: str, worker_id: str) -> float | None:
    for line in screen.splitlines():
        if worker_id in line and (match := _LAG.search(line)):
            value = float(match[1])
            return value if match[2] == "ms" else value * 1000
    return None


async def test_corral_top_in_a_real_terminal(
    redis_url: str, client: Client, worker_procs: list[WorkerProcess]
) -> None:
    await _backlog_and_a_busy_worker(redis_url, client, worker_procs)
    # A task that blocks its worker's event loop 0.4 s at a time: a lag top must show.
    worker_procs.append(WorkerProcess(redis_url, worker_id="lag-worker",
                                      args=["--queues", "hogs"]).wait_started())
    await client.enqueue("hog", [120], queue="hogs")
    terminal = Terminal([sys.executable, "-m", "corral", "top", "--interval", "0.3",
                         "--redis-url", redis_url])
    try:
        async def drawn() -> bool:
            screen = terminal.screen()
            lag_ms = _lag_ms(screen, "lag-worker")
            return ("top-worker" in screen and "p7=4" in screen and lag_ms is not None
                    and lag_ms >= 100)

        await _until(drawn, "the view in the terminal, with the hog's loop lag")
        screen = terminal.screen()
        for heading in ("QUEUE", "BACKLOG", "IN FLIGHT", "FINISHED/s", "WAIT p99", "LOOP LAG",
                        "HEARTBEAT"):
            assert heading in screen
        assert _lag_ms(screen, "top-worker") is not None  # every worker has one
        inspected = json.loads(corral("inspect", "--json", url=redis_url).stdout)
        [entry] = inspected["hogs"]["workers"]
        assert entry["id"] == "lag-worker" and entry["loop_lag_ms"] >= 100
        terminal.send("q")

        async def exited() -> bool:
            return terminal.exit_code is not None

        await _until(exited, "corral top exit")
        assert terminal.exit_code == 0
    finally:
        terminal.close()


def test_top_without_textual_or_terminal_says_what_to_do(redis_url: str) -> None:
    script = ("import sys; sys.modules['textual'] = None; from corral.cli import main; "
              f"main(['--redis-url', {redis_url!r}, 'top'])")
    missing = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             timeout=60)
    assert missing.returncode == 1
    assert missing.stderr.strip() == ("corral top: error: the live view needs textual: "
                                      "pip install 'corral[top]' (or use corral inspect)")
    no_tty = corral("top", url=redis_url)
    assert no_tty.returncode == 1 and "needs a terminal" in no_tty.stderr
    watch = corral("inspect", "--watch", url=redis_url)  # the same view
    assert watch.returncode == 1 and "corral inspect: error: the live view needs a terminal" in (
        watch.stderr)
