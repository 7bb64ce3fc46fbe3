"""Least-privilege Redis users (``corral acl``) on a real Redis: each role's work runs
under its user, so a command the code starts sending that the role lacks fails here;
and what a role may not do is refused with one readable line."""

from __future__ import annotations

import asyncio
import os
import shlex
import subprocess
import sys
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis.asyncio
from redis.exceptions import NoPermissionError

from corral import Client, TaskFailed
from corral.acl import Role, acl_rules
from corral.admin import dead_tasks, dlq_change
from corral.depths import read_queue_depths
from corral.scripts import PermissionDenied
from corral_operator.redis_io import RedisUnavailable, Servers
from tests.apps.tenants import team_a
from tests.support.workers import WorkerProcess

PREFIX = "team-a"
PASSWORD = "s3cret-for-tests"


def corral(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CORRAL_PREFIX"}
    return subprocess.run([sys.executable, "-m", "corral", *args], capture_output=True,
                          text=True, timeout=60, env=env)


def user_url(url: str, user: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{user}:{PASSWORD}@{parts.hostname}:{parts.port}"))


async def add_user(admin: redis.asyncio.Redis, role: str, user: str) -> None:
    """The user exactly as ``corral acl`` prints it, with a password added."""
    printed = corral("acl", "--role", role, "--queues", "a", "--prefix", PREFIX, "--user", user)
    assert printed.returncode == 0, printed.stderr
    words = shlex.split(printed.stdout)
    assert words[:3] == ["ACL", "SETUSER", user]
    await admin.execute_command(*words, f">{PASSWORD}")


@pytest.fixture
async def users(redis_url: str, redis_conn: redis.asyncio.Redis) -> AsyncIterator[dict[str, str]]:
    version = (await redis_conn.info("server"))["redis_version"]
    assert int(str(version).split(".")[0]) >= 7, f"ACL selectors need Redis 7, not {version}"
    urls = {}
    for role in Role:
        user = f"test-{role.value}"
        await add_user(redis_conn, role.value, user)
        urls[role.value] = user_url(redis_url, user)
    yield urls
    for role in Role:
        await redis_conn.execute_command("ACL", "DELUSER", f"test-{role.value}")


def test_the_rules_name_the_queues_keys_and_channels_only() -> None:
    worker = acl_rules(Role.WORKER, ["a"], PREFIX)
    assert "~team-a:{a}:*" in worker and "&team-a:{a}:cancel" in worker
    assert worker[:3] == ["reset", "on", "-@all"]
    operator = acl_rules(Role.OPERATOR, ["a", "b"], PREFIX)
    assert [r for r in operator if "~" in r] == ["%R~team-a:{a}:*", "%R~team-a:{b}:*"]
    assert [r for r in operator if r.startswith("&")] == ["&team-a:{a}:wake", "&team-a:{b}:wake"]
    assert not {"+hset", "+del", "+publish"} & set(operator)
    assert {"+evalsha", "+script|load", "+time", "+zadd", "+lpop"} <= set(worker)


async def test_roles_do_their_work_on_queue_a_under_their_users(
    redis_url: str, users: dict[str, str], workers: list[WorkerProcess],
) -> None:
    workers.append(WorkerProcess(users["worker"], app="tests.apps.tenants:team_a",
                                 worker_id="acl-worker",
                                 args=("--queues", "a", "--lease-seconds", "3")).wait_started())
    async with Client.from_url(users["producer"], app=team_a) as producer:
        handles = [await producer.enqueue("whoami", queue="a") for _ in range(5)]
        assert await asyncio.gather(*(h.result(timeout=30) for h in handles)) == ["team-a"] * 5
        assert await handles[0].status() == "succeeded"
        dead = await producer.enqueue("fail", queue="a")
        with pytest.raises(TaskFailed, match="team a's task failed"):
            await dead.result(timeout=30)
        assert [t.id for t in await dead_tasks(producer.redis, "a", prefix=PREFIX)] == [dead.id]
        assert await dlq_change(producer.redis, "a", "purge", [dead.id], prefix=PREFIX) == 1
        later = await producer.enqueue("whoami", queue="a", delay=3600)
        assert await later.cancel() is True
        depths = await read_queue_depths(producer.redis, ["a"], prefix=PREFIX)
        assert depths["a"].dead == 0 and depths["a"].scheduled == 0

    # The operator's read path (its shared server), under the read-only user.
    servers = Servers()
    server = servers.acquire(users["operator"], prefix=PREFIX)
    try:
        for _ in range(300):  # until a heartbeat has written the worker's registry entry
            found = (await server.depths(["a"]))["a"]
            if found.workers:
                break
            await asyncio.sleep(0.1)
        assert [w.worker_id for w in found.workers] == ["acl-worker"]
        with pytest.raises(RedisUnavailable, match="the Redis user may not use queue 'b'"):
            await server.depths(["b"])
    finally:
        await servers.close()
    refused = [line for line in workers[0].lines if "permission" in line.lower()
               or "noperm" in line.lower()]
    assert refused == []


async def test_the_operators_user_reads_and_cannot_write(users: dict[str, str]) -> None:
    async with Client.from_url(users["operator"], prefix=PREFIX) as operator:
        assert (await read_queue_depths(operator.redis, ["a"], prefix=PREFIX))["a"].ready == 0
        with pytest.raises(PermissionDenied, match="queue 'a'"):
            await operator.enqueue("whoami", queue="a")
        with pytest.raises(NoPermissionError):
            await operator.redis.hset("team-a:{a}:t:x", "state", "queued")
        with pytest.raises(PermissionDenied):
            await dlq_change(operator.redis, "a", "purge", prefix=PREFIX)


def test_enqueueing_outside_the_users_queues_is_one_readable_line(
    users: dict[str, str],
) -> None:
    for role in ("worker", "producer"):
        result = corral("--redis-url", users[role], "--prefix", PREFIX, "enqueue", "whoami",
                        "--queue", "b")
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("corral enqueue: error: permission denied: the Redis user "
                                   "may not use queue 'b' (keys team-a:{b}:*): ")
    inspect = corral("--redis-url", users["operator"], "--prefix", PREFIX, "inspect")
    assert inspect.returncode == 1
    lines = inspect.stderr.strip().splitlines()
    assert len(lines) == 1 and PASSWORD not in lines[0]
    assert lines[0].startswith("corral inspect: error: redis at redis://test-operator:***@")
    assert lines[0].endswith(": permission denied: this user has no permissions to run the "
                             "'scan' command (see corral acl)")
