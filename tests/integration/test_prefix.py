"""Key prefixes on a real Redis: two teams with a queue ``default`` each, one Redis,
and neither sees the other's tasks (enqueue, claim, depths, dead letters, inspect)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio

from corral import Client, ConfigError
from corral.admin import dead_tasks, known_queues
from corral.depths import read_queue_depths
from tests.apps.tenants import team_a, team_b
from tests.support.workers import WorkerProcess


def corral(url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "CORRAL_PREFIX"} | env
    return subprocess.run([sys.executable, "-m", "corral", "--redis-url", url, *args],
                          capture_output=True, text=True, timeout=60, env=environ)


@pytest.fixture
async def teams(redis_url: str) -> AsyncIterator[tuple[Client, Client]]:
    async with Client.from_url(redis_url, app=team_a) as a, \
            Client.from_url(redis_url, app=team_b, prefix="team-b") as b:
        yield a, b


async def test_producers_of_two_prefixes_never_meet(
    teams: tuple[Client, Client], redis_conn: redis.asyncio.Redis,
) -> None:
    a, b = teams
    assert (a.prefix, b.prefix) == ("team-a", "team-b")
    a_handles = [await a.enqueue("whoami", key=f"k{i}") for i in range(3)]
    b_handle = await b.enqueue("whoami", key="k0")  # the same de-duplication key
    assert b_handle.id not in {h.id for h in a_handles}
    depths_a = await read_queue_depths(a.redis, ["default"], prefix="team-a")
    depths_b = await read_queue_depths(b.redis, ["default"], prefix="team-b")
    assert (depths_a["default"].ready, depths_b["default"].ready) == (3, 1)
    # An id resolves within the asking client's prefix only.
    assert await b.status(a_handles[0].id) == "unknown"
    assert await b.cancel(a_handles[0].id) is False
    assert await a.status(a_handles[0].id) == "queued"
    assert await known_queues(a.redis, prefix="team-a") == ["default"]
    assert await known_queues(a.redis) == []  # nothing under the default prefix
    keys = sorted(k.decode() for k in await redis_conn.keys("*"))
    assert keys and all(k.startswith(("team-a:{default}:", "team-b:{default}:")) for k in keys)


async def test_worker_processes_claim_only_their_prefix(
    redis_url: str, teams: tuple[Client, Client], workers: list[WorkerProcess],
) -> None:
    a, b = teams
    workers.append(WorkerProcess(redis_url, app="tests.apps.tenants:team_a",
                                 worker_id="worker-a").wait_started())
    workers.append(WorkerProcess(redis_url, app="tests.apps.tenants:team_b", worker_id="worker-b",
                                 args=("--prefix", "team-b")).wait_started())
    a_handles = [await a.enqueue("whoami") for _ in range(10)]
    b_handles = [await b.enqueue("whoami") for _ in range(10)]
    a_results = await asyncio.gather(*(h.result(timeout=30) for h in a_handles))
    b_results = await asyncio.gather(*(h.result(timeout=30) for h in b_handles))
    assert set(a_results) == {"team-a"} and set(b_results) == {"team-b"}
    dead = await a.enqueue("fail")
    with pytest.raises(Exception, match="team a's task failed"):
        await dead.result(timeout=30)
    assert [t.id for t in await dead_tasks(a.redis, "default", prefix="team-a")] == [dead.id]
    assert await dead_tasks(b.redis, "default", prefix="team-b") == []
    depths = await read_queue_depths(b.redis, ["default"], prefix="team-b")
    assert depths["default"].dead == 0
    assert [w.worker_id for w in depths["default"].workers] == ["worker-b"]

    # The command line: --prefix before or after the command, or $CORRAL_PREFIX.
    before = corral(redis_url, "--prefix", "team-a", "inspect", "--json")
    after = corral(redis_url, "inspect", "--json", "--prefix", "team-b")
    from_env = corral(redis_url, "inspect", "--json", CORRAL_PREFIX="team-a")
    assert before.returncode == after.returncode == from_env.returncode == 0, after.stderr
    assert json.loads(before.stdout)["default"]["dead"] == 1
    assert json.loads(from_env.stdout) == json.loads(before.stdout)
    assert json.loads(after.stdout)["default"]["dead"] == 0
    listed = corral(redis_url, "dlq", "list", "--prefix", "team-b")
    assert listed.returncode == 0 and dead.id not in listed.stdout
    requeue = corral(redis_url, "dlq", "requeue", dead.id, "--prefix", "team-b")
    assert requeue.returncode == 1 and "not in the dead-letter queue" in requeue.stderr
    shown = corral(redis_url, "dlq", "show", dead.id, "--prefix", "team-a")
    assert shown.returncode == 0 and "team a's task failed" in shown.stdout
    status = corral(redis_url, "status", dead.id, "--prefix", "team-b")
    assert (status.returncode, status.stdout.strip()) == (1, "unknown")


def test_a_prefix_that_differs_from_the_apps_is_refused(redis_url: str) -> None:
    worker = corral(redis_url, "worker", "tests.apps.tenants:team_a", "--prefix", "team-b",
                    "--metrics-port", "-1")
    assert worker.returncode == 1
    assert worker.stderr.strip().splitlines() == [
        "corral worker: error: key prefix 'team-b' differs from the app's prefix 'team-a' "
        "(App(prefix=...)); use the same one"]
    enqueue = corral(redis_url, "enqueue", "whoami", "--app", "tests.apps.tenants:team_a",
                     CORRAL_PREFIX="other")
    assert enqueue.returncode == 1 and len(enqueue.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("prefix", ["team{a}", "a:b", "*", ""])
def test_a_bad_prefix_is_one_usage_line(redis_url: str, prefix: str) -> None:
    result = corral(redis_url, "--prefix", prefix, "inspect")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "prefix" in result.stderr


def test_an_app_with_a_bad_prefix_is_a_config_error() -> None:
    from corral import App

    with pytest.raises(ConfigError, match="prefix"):
        App(prefix="a{b}")


async def test_the_dashboard_shows_and_changes_its_prefix_only(
    redis_url: str, teams: tuple[Client, Client],
) -> None:
    import urllib.request

    from tests.support.dashboard import TOKEN, DashboardProcess, post

    a, b = teams
    a_task = await a.enqueue("whoami", delay=3600)
    b_tasks = [await b.enqueue("whoami") for _ in range(2)]
    dashboard = DashboardProcess(redis_url, ["--prefix", "team-b", "--allow-actions",
                                             "--token", TOKEN])
    dashboard.wait_started()
    try:
        def get(path: str) -> Any:
            with urllib.request.urlopen(dashboard.url + path, timeout=30) as response:
                return json.loads(response.read())

        queues = get("api/queues")
        assert (queues["default"]["ready"], queues["default"]["scheduled"]) == (2, 0)
        assert get(f"api/tasks/{b_tasks[0].id}")["state"] == "queued"
        assert post(dashboard.url + f"api/tasks/{a_task.id}/cancel", {}, TOKEN)[0] == 404
        assert await a.status(a_task.id) == "scheduled"
    finally:
        dashboard.close()
