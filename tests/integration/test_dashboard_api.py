"""The dashboard's JSON API under /api/ against a real Redis and a real worker."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from typing import Any

from corral import Client
from tests.support.dashboard import TOKEN, DashboardProcess, inspect_json, post, wait_dead
from tests.support.workers import WorkerProcess


def get(url: str) -> tuple[int, Any, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), dict(exc.headers)


async def test_the_api_serves_queues_workers_tasks_and_dead_letters(
        redis_url: str, client: Client) -> None:
    worker = WorkerProcess(redis_url).wait_started()
    dashboard = DashboardProcess(redis_url, ["--allow-actions", "--token", TOKEN])
    dashboard.wait_started()
    try:
        # A scheduled task makes the queue known; once the dashboard listens on its done
        # channel, every task that finishes from here on is counted.
        await client.enqueue("noop", delay=3600)
        async with asyncio.timeout(60):
            while True:
                if (await client.redis.pubsub_numsub("corral:{default}:done"))[0][1]:
                    break
                await asyncio.sleep(0.1)
        dead = await client.enqueue("fail", ["boom"])
        await wait_dead(client, "default", 1)
        done = await client.enqueue("echo", [1], {"k": "v"})
        assert await done.result(timeout=30) == {"args": [1], "kwargs": {"k": "v"}}
        assert worker.terminate() == 0
        await client.enqueue("noop", queue="other", priority=3)

        status, queues, headers = get(dashboard.url + "api/queues")
        assert status == 200
        assert "default-src 'none'" in headers["Content-Security-Policy"]
        expected = inspect_json(redis_url)
        assert {q: {k: v for k, v in d.items() if k != "throughput"}
                for q, d in queues.items()} == expected
        # Both finished tasks were announced on the done channel and counted.
        async with asyncio.timeout(60):
            while sum(s["finished"] for s in queues["default"]["throughput"]) < 2:
                await asyncio.sleep(0.2)
                queues = get(dashboard.url + "api/queues")[1]
        assert sum(s["finished"] for s in queues["default"]["throughput"]) == 2

        status, workers, _ = get(dashboard.url + "api/workers")
        assert (status, workers) == (200, {"workers": []})  # the worker has left

        status, record, _ = get(dashboard.url + f"api/tasks/{done.id}")
        assert status == 200
        assert {k: record[k] for k in ("id", "queue", "name", "state", "attempts", "args",
                                       "result")} == {
            "id": done.id, "queue": "default", "name": "echo", "state": "succeeded",
            # A finished task's payload is dropped at once (retention): no args to show.
            "attempts": 1, "args": "",
            "result": '{"args": [1], "kwargs": {"k": "v"}}'}
        assert set(record["times_ms"]) >= {"enq_ms", "started_ms", "finished_ms"}
        status, missing, _ = get(dashboard.url + "api/tasks/nope")
        assert status == 404 and "no task nope" in missing["error"]

        status, dlq, _ = get(dashboard.url + "api/dlq?queue=default")
        assert status == 200 and dlq["dead"] == 1
        [entry] = dlq["tasks"]
        assert (entry["id"], entry["name"], entry["error_type"], entry["message"]) == (
            dead.id, "fail", "ValueError", "boom")
        assert "Traceback" in entry["traceback"]
        status, bad, _ = get(dashboard.url + "api/dlq?queue=bad{name}")
        assert status == 400 and "invalid queue name" in bad["error"]

        assert post(dashboard.url + "api/dlq/default/requeue", {"ids": [dead.id]},
                    TOKEN) == (200, {"op": "requeue", "count": 1})
        assert await client.status(dead.id) == "queued"
        status, body = post(dashboard.url + "api/dlq/default/explode", {"all": True}, TOKEN)
        assert status == 400 and "unknown operation" in body["error"]
        status, body = post(dashboard.url + "api/dlq/default/purge", {}, TOKEN)
        assert status == 400 and "ask for all" in body["error"]
        assert post(dashboard.url + f"api/tasks/{dead.id}/cancel", {}, TOKEN) == (
            200, {"id": dead.id, "queue": "default", "cancelled": True})
        assert await client.status(dead.id) == "cancelled"
    finally:
        dashboard.close()
        worker.close()


def test_a_port_in_use_is_one_line_naming_port_0(redis_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "corral", "dashboard", "--redis-url", redis_url,
             "--port", str(port)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    [line] = proc.stderr.splitlines()
    assert line.startswith(f"corral dashboard: error: cannot serve on 127.0.0.1:{port}: ")
    assert line.endswith("--port 0 picks a free port")


def test_an_unreachable_redis_is_a_503_without_the_password() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    dashboard = DashboardProcess(f"redis://ops:hunter2-password@127.0.0.1:{port}/0")
    dashboard.wait_started()
    try:
        status, body, _ = get(dashboard.url + "api/queues")
        assert status == 503
        assert body == {"error": f"Redis at redis://ops:***@127.0.0.1:{port}/0 failed: "
                                 "ConnectionError"}
        request = urllib.request.Request(dashboard.url)
        try:
            urllib.request.urlopen(request, timeout=30)
        except urllib.error.HTTPError as exc:
            page = exc.read().decode()
            assert exc.code == 503 and "redis://ops:***@" in page
            assert "hunter2" not in page
        else:
            raise AssertionError("the queues page answered 200 without Redis")
    finally:
        dashboard.close()
    assert "hunter2" not in "\n".join(dashboard.lines)
