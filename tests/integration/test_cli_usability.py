"""The `corral` command line as a new user meets it: worker ids, ports, --app, global
options, messages, the dead-letter queue, help and version. Real CLI, real Redis."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator

import pytest
import redis.asyncio

from corral import Client, TaskFailed
from corral.cli import build_parser
from corral.keys import DEFAULT_PREFIX, queue_keys
from tests.integration.test_cli import corral
from tests.support.inproc import running_worker
from tests.support.terminal import Terminal
from tests.support.workers import WorkerProcess

QUEUES_APP = "tests.apps.queues:app"


def corral_env(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "corral", *args], capture_output=True, text=True, timeout=60,
        env=dict(os.environ, **env),
    )


def one_error_line(result: subprocess.CompletedProcess[str], command: str) -> str:
    """The single stderr line of a failed command, in the one house style."""
    assert result.returncode != 0, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"corral {command}: error: "), lines[0]
    return lines[0]


# -- defect 2: a default worker id per process -------------------------------------------

async def test_two_workers_on_one_host_have_two_registry_entries(
    redis_url: str, workers: list[WorkerProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("POD_NAME", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    for _ in range(2):
        workers.append(WorkerProcess(redis_url, worker_id=None).wait_started())
    inspected = json.loads(corral("inspect", "--json", url=redis_url).stdout)
    ids = {w["id"] for w in inspected["default"]["workers"]}
    assert len(ids) == 2, ids
    assert all(i.startswith(socket.gethostname()) for i in ids)


def test_default_worker_id_is_the_pod_name_on_kubernetes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from corral_worker.settings import WorkerSettings

    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("POD_NAME", raising=False)
    here = WorkerSettings(redis_url="redis://x").worker_id
    assert here == f"{socket.gethostname()}-{os.getpid()}"
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    assert WorkerSettings(redis_url="redis://x").worker_id == socket.gethostname()
    monkeypatch.setenv("POD_NAME", "workers-7d9f-abcde")
    assert WorkerSettings(redis_url="redis://x").worker_id == "workers-7d9f-abcde"


# -- defect 3: metrics port in use -------------------------------------------------------

def test_metrics_port_in_use_is_one_line(redis_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = corral("worker", "tests.apps.basic:app", "--metrics-port", str(port),
                        url=redis_url)
    line = one_error_line(result, "worker")
    assert str(port) in line and "--metrics-port 0" in line
    assert "Traceback" not in result.stderr


# -- defect 4: --app, the task's queue, the queue from the id -------------------------------

async def test_enqueue_with_app_uses_the_declared_queue(
    redis_url: str, redis_conn: redis.asyncio.Redis
) -> None:
    enqueued = corral("--app", QUEUES_APP, "enqueue", "send_mail", "--kwargs",
                      '{"to": "a@b"}', url=redis_url)
    assert enqueued.returncode == 0, enqueued.stderr
    task_id = enqueued.stdout.strip()
    assert await redis_conn.llen(queue_keys("mail", DEFAULT_PREFIX).ready[0]) == 1
    assert await redis_conn.llen(queue_keys("default", DEFAULT_PREFIX).ready[0]) == 0
    # No --queue: the id says where the task is.
    assert corral("status", task_id, url=redis_url).stdout.strip() == "queued"
    cancelled = corral("cancel", task_id, url=redis_url)
    assert cancelled.returncode == 0, cancelled.stderr
    assert corral("status", task_id, url=redis_url).stdout.strip() == "cancelled"


def test_app_from_the_environment_refuses_unknown_tasks(redis_url: str) -> None:
    unknown = corral_env("enqueue", "send_mial", CORRAL_APP=QUEUES_APP,
                         CORRAL_REDIS_URL=redis_url)
    assert "unknown task 'send_mial'" in one_error_line(unknown, "enqueue")
    known = corral_env("enqueue", "report", CORRAL_APP=QUEUES_APP, CORRAL_REDIS_URL=redis_url)
    assert known.returncode == 0, known.stderr
    assert corral("status", known.stdout.strip(), url=redis_url).stdout.strip() == "queued"


async def test_result_without_queue_finds_the_task(redis_url: str) -> None:
    from tests.apps.queues import app

    async with Client.from_url(redis_url, app=app) as client:
        handle = await client.enqueue("send_mail", kwargs={"to": "x@y"})
        async with running_worker(redis_url, app=app, queues={"mail": 1}):
            assert await handle.result(timeout=20) == "x@y"
    result = corral("result", handle.id, url=redis_url)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == "x@y"


async def test_ids_of_the_longest_queue_name_still_run(redis_url: str, client: Client) -> None:
    queue = "q" * 100
    handle = await client.enqueue("noop", [7], queue=queue)
    assert handle.id.startswith(f"{queue}:") and len(handle.id) <= 128
    async with running_worker(redis_url, queues={queue: 1}):
        assert await client.result(handle.id, timeout=20) == 7  # no queue given: from the id


async def test_old_ids_work_with_queue(redis_conn: redis.asyncio.Redis, redis_url: str) -> None:
    old_id = "0123456789abcdef0123456789abcdef"
    key = queue_keys("mail", DEFAULT_PREFIX).task(old_id)
    await redis_conn.hset(key, mapping={"state": "queued"})
    assert corral("status", old_id, "--queue", "mail", url=redis_url).stdout.strip() == "queued"
    assert corral("status", old_id, url=redis_url).stdout.strip() == "unknown"


# -- defect 5: global options anywhere, a bad db index ----------------------------------------

def test_global_options_after_the_subcommand(redis_url: str) -> None:
    enqueued = corral("enqueue", "noop", "--redis-url", redis_url)
    assert enqueued.returncode == 0, enqueued.stderr
    task_id = enqueued.stdout.strip()
    assert corral("status", task_id, "--redis-url", redis_url).stdout.strip() == "queued"
    assert "default" in corral("inspect", "--redis-url", redis_url).stdout
    listed = corral("dlq", "list", "--redis-url", redis_url)
    assert listed.returncode == 0, listed.stderr
    with_app = corral("enqueue", "report", "--app", QUEUES_APP, "--redis-url", redis_url)
    assert with_app.returncode == 0, with_app.stderr


def test_bad_db_index_is_refused() -> None:
    result = corral("inspect", url="redis://127.0.0.1:6379/abc")
    assert "db" in one_error_line(result, "inspect")


# -- defect 9: one message style ------------------------------------------------------------

def test_settings_errors_name_the_option(redis_url: str) -> None:
    result = corral("worker", "tests.apps.basic:app", "--lease-seconds", "1", url=redis_url)
    line = one_error_line(result, "worker")
    assert "--lease-seconds" in line and "lease_s" not in line


def test_worker_app_from_the_environment(redis_url: str) -> None:
    unnamed = corral_env("worker", CORRAL_REDIS_URL=redis_url, CORRAL_APP="")
    assert "MODULE:ATTR" in one_error_line(unnamed, "worker") and unnamed.returncode == 2
    # The app loads from $CORRAL_APP; then the settings are checked.
    from_env = corral_env("worker", "--lease-seconds", "1", CORRAL_APP="tests.apps.basic:app",
                          CORRAL_REDIS_URL=redis_url)
    assert "--lease-seconds" in one_error_line(from_env, "worker")


def test_missing_app_attribute_is_named(redis_url: str) -> None:
    result = corral("worker", "tests.apps.basic:nope", url=redis_url)
    line = one_error_line(result, "worker")
    assert "tests.apps.basic" in line and "no attribute 'nope'" in line
    assert "NoneType" not in line


def test_result_errors_share_the_prefix(redis_url: str) -> None:
    task_id = corral("enqueue", "noop", "--delay", "60", url=redis_url).stdout.strip()
    waited = corral("result", task_id, "--timeout", "0.1", url=redis_url)
    assert "did not finish" in one_error_line(waited, "result")
    assert corral("cancel", task_id, url=redis_url).returncode == 0
    cancelled = one_error_line(corral("result", task_id, url=redis_url), "result")
    assert "cancelled" in cancelled and "Cancelled: " not in cancelled
    again = one_error_line(corral("cancel", task_id, url=redis_url), "cancel")
    assert "already cancelled" in again


# -- defect 10: the dead-letter queue ------------------------------------------------------

async def _two_dead(redis_url: str, client: Client) -> list[str]:
    handles = [await client.enqueue("fail", [f"boom {i}"]) for i in range(2)]
    async with running_worker(redis_url):
        for handle in handles:
            with contextlib.suppress(TaskFailed):
                await handle.result(timeout=20)
    return [h.id for h in handles]


async def test_dlq_purge_needs_all_and_requeue_reports_unknown(
    redis_url: str, client: Client, redis_conn: redis.asyncio.Redis
) -> None:
    ids = await _two_dead(redis_url, client)
    refused = corral("dlq", "purge", url=redis_url)
    assert "--all" in one_error_line(refused, "dlq purge")
    assert await redis_conn.zcard(queue_keys("default", DEFAULT_PREFIX).dead) == 2
    requeued = corral("dlq", "requeue", ids[0], url=redis_url)
    assert requeued.returncode == 0 and requeued.stdout.strip() == "requeued 1 task"
    unknown = corral("dlq", "requeue", "no-such-id", url=redis_url)
    assert "no-such-id" in one_error_line(unknown, "dlq requeue")
    both = corral("dlq", "purge", ids[1], "--all", url=redis_url)
    assert "not both" in one_error_line(both, "dlq purge") and both.returncode == 2
    purged = corral("dlq", "purge", "--all", url=redis_url)
    assert purged.stdout.strip() == "purged 1 task", purged.stderr
    assert await redis_conn.zcard(queue_keys("default", DEFAULT_PREFIX).dead) == 0


async def test_dlq_purge_asks_on_a_terminal(
    redis_url: str, client: Client, redis_conn: redis.asyncio.Redis
) -> None:
    await _two_dead(redis_url, client)
    dead = queue_keys("default", DEFAULT_PREFIX).dead
    for answer, code, left in (("n", 1, 2), ("y", 0, 0)):
        terminal = Terminal([sys.executable, "-m", "corral", "dlq", "purge",
                             "--redis-url", redis_url])
        try:
            await _until(lambda t=terminal: "[y/N]" in t.screen())
            terminal.send(answer, "Enter")
            await _until(lambda t=terminal: t.exit_code is not None)
            assert terminal.exit_code == code, terminal.screen()
        finally:
            terminal.close()
        assert await redis_conn.zcard(dead) == left


async def _until(check: Callable[[], bool]) -> None:
    for _ in range(400):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met")


async def test_dlq_show_prints_the_traceback(redis_url: str, client: Client) -> None:
    ids = await _two_dead(redis_url, client)
    shown = corral("dlq", "show", ids[1], url=redis_url)
    assert shown.returncode == 0, shown.stderr
    assert "Traceback (most recent call last)" in shown.stdout
    assert "ValueError: boom 1" in shown.stdout and "attempts: 3" in shown.stdout
    listed = corral("dlq", "list", "--traceback", url=redis_url)
    assert listed.stdout.count("Traceback (most recent call last)") == 2
    missing = corral("dlq", "show", "no-such-id", url=redis_url)
    assert "no-such-id" in one_error_line(missing, "dlq show")


# -- defect 11: version, help, endpoints -----------------------------------------------------

def test_version() -> None:
    result = corral("--version")
    assert result.returncode == 0 and result.stdout.startswith("corral 0.")


def _parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                yield from _parsers(child)


def test_every_option_has_help() -> None:
    missing = [
        f"{parser.prog} {action.option_strings or action.dest}"
        for parser in _parsers(build_parser())
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction)
        and action.help is None
    ]
    assert missing == []
    assert "default 10" in corral("result", "--help").stdout
    helps = {corral("dlq", sub, "--help").stdout for sub in ("list", "requeue", "purge", "show")}
    assert len(helps) == 4


async def test_startup_log_and_debug_tasks_running_time(
    redis_url: str, client: Client, workers: list[WorkerProcess]
) -> None:
    worker = WorkerProcess(redis_url)
    workers.append(worker.wait_started())
    started = next(line for line in worker.lines if "worker http on" in line)
    for path in ("/metrics", "/healthz", "/readyz", "/debug/tasks"):
        assert path in started
    handle = await client.enqueue("sleep", [30])
    while await handle.status() != "running":  # noqa: ASYNC110 - state lives in Redis
        await asyncio.sleep(0.05)
    url = f"http://127.0.0.1:{worker.metrics_port}/debug/tasks"
    dump = await asyncio.to_thread(_get, url)
    line = next(line for line in dump.splitlines() if handle.id in line)
    assert "running for " in line
    await handle.cancel()


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())
