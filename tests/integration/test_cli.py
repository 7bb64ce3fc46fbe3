"""The `corral` command line against a real Redis."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys

import pytest
import redis.asyncio

from corral import Client, TaskFailed
from corral.keys import DEFAULT_PREFIX, queue_keys
from tests.support.inproc import running_worker
from tests.support.workers import WorkerProcess


def corral(*args: str, url: str | None = None) -> subprocess.CompletedProcess[str]:
    prefix = ["--redis-url", url] if url else []
    return subprocess.run(
        [sys.executable, "-m", "corral", *prefix, *args], capture_output=True, text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "args",
    [
        ["enqueue", "t", "--priority", "10"],
        ["enqueue", "t", "--args", "{not json"],
        ["enqueue", "t", "--args", '{"a": 1}'],
        ["enqueue", "t", "--kwargs", "[1]"],
        ["enqueue", "t", "--delay", "-1"],
        ["enqueue", "t", "--queue", "bad{name}"],
        ["worker", "tests.apps.basic:app", "--queues", "a=0"],
        ["worker", "tests.apps.basic:app", "--concurrency", "zero"],
        ["dlq", "explode"],
        ["nonsense"],
        [],
    ],
)
def test_bad_arguments_get_one_line_and_nonzero_exit(args: list[str], redis_url: str) -> None:
    result = corral(*args, url=redis_url)
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_runtime_errors_are_one_line() -> None:
    unreachable = corral("enqueue", "noop", url="redis://127.0.0.1:1/0")
    assert unreachable.returncode == 1
    assert unreachable.stderr.count("\n") == 1 and "redis at" in unreachable.stderr
    bad_url = corral("inspect", url="http://example")
    assert bad_url.returncode != 0 and bad_url.stderr.count("\n") == 1
    bad_app = corral("worker", "no_such_module:app", url="redis://127.0.0.1:1/0")
    assert bad_app.returncode == 1 and bad_app.stderr.count("\n") == 1


def test_every_command_has_help() -> None:
    for command in ["worker", "enqueue", "status", "cancel", "result", "inspect", "dlq",
                    "operator", "demo"]:
        result = corral(command, "--help")
        assert result.returncode == 0 and "usage: corral" in result.stdout


async def test_enqueue_status_result_inspect(redis_url: str) -> None:
    enqueued = corral("enqueue", "echo", "--args", '[1, "x"]', "--kwargs", '{"k": true}',
                      "--priority", "7", url=redis_url)
    assert enqueued.returncode == 0, enqueued.stderr
    task_id = enqueued.stdout.strip()
    assert corral("status", task_id, url=redis_url).stdout.strip() == "queued"
    inspected = corral("inspect", url=redis_url)
    assert "default" in inspected.stdout and "p7=1" in inspected.stdout
    as_json = json.loads(corral("inspect", "--json", url=redis_url).stdout)
    assert as_json["default"]["ready"] == 1
    # A worker process: these commands block, so an in-process worker would not run.
    worker = WorkerProcess(redis_url, worker_id="cli-test").wait_started()
    try:
        result = corral("result", task_id, "--timeout", "10", url=redis_url)
        assert json.loads(result.stdout) == {"args": [1, "x"], "kwargs": {"k": True}}
        waited = corral("enqueue", "noop", "--args", "[5]", "--wait", "10", url=redis_url)
        assert waited.stdout.split()[-1] == "5"
        assert "cli-test" in corral("inspect", url=redis_url).stdout
    finally:
        worker.terminate()
    assert corral("status", "nope", url=redis_url).returncode == 1


async def test_dlq_list_requeue_purge(redis_url: str, client: Client,
                                      redis_conn: redis.asyncio.Redis) -> None:
    failing = await client.enqueue("fail_no_dlq")
    await redis_conn.delete("test:fail_attempts")
    handles = [await client.enqueue("fail", [f"boom {i}"]) for i in range(2)]
    async with running_worker(redis_url):
        for handle in [*handles, failing]:
            with contextlib.suppress(TaskFailed):
                await handle.result(timeout=20)
    listed = corral("dlq", "list", url=redis_url)
    assert listed.stdout.count("ValueError: boom") == 2 and "attempts=3" in listed.stdout
    assert failing.id not in listed.stdout  # failed, not dead-lettered
    requeued = corral("dlq", "requeue", handles[0].id, url=redis_url)
    assert requeued.stdout.strip() == "requeued 1 task"
    assert await handles[0].status() == "queued"
    key = queue_keys("default", DEFAULT_PREFIX).task(handles[0].id)
    assert await redis_conn.hget(key, "attempts") == b"0"
    assert corral("dlq", "purge", "--all", url=redis_url).stdout.strip() == "purged 1 task"
    assert await redis_conn.zcard(queue_keys("default", DEFAULT_PREFIX).dead) == 0
    assert await handles[1].status() == "unknown"


def test_cancel_command(redis_url: str) -> None:
    task_id = corral("enqueue", "noop", "--delay", "60", url=redis_url).stdout.strip()
    assert corral("cancel", task_id, url=redis_url).returncode == 0
    again = corral("cancel", task_id, url=redis_url)
    assert again.returncode == 1 and "not cancelled: already cancelled" in again.stderr
