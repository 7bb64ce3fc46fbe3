"""The operator ticks periodic tasks when no worker runs, then scales from zero to run
them (real Redis; the Kubernetes API is the controller tests' fake)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio

from corral.keys import DEFAULT_PREFIX, queue_keys
from corral.periodic import CatchUp, Every, Schedule
from corral.schedules import register
from corral.scripts import Scripts
from corral_operator import controller as ctl
from corral_operator.metrics import OperatorMetrics
from corral_operator.redis_io import RedisSettings, Servers
from tests.unit.test_operator_controller import (
    NAME,
    NS,
    UID,
    Clock,
    FakeKube,
    body,
    spec_for,
    until,
)

Q1 = queue_keys("q1", DEFAULT_PREFIX)


def _schedule(catch_up: CatchUp = CatchUp.LATEST) -> Schedule:
    return Schedule(
        name="beat",
        task="noop",
        queue="q1",
        cadence=Every(1000),
        args=(),
        kwargs={},
        priority=0,
        catch_up=catch_up,
        max_catch_up=100,
    )


async def _missed(conn: redis.asyncio.Redis, schedule: Schedule, seconds: int) -> None:
    """Registered, then nothing ticked it for ``seconds`` (no worker ran)."""
    registered_ms = await register(
        Scripts.register(conn), [schedule], ["q1"], prefix=DEFAULT_PREFIX
    )
    await conn.hset(Q1.ticks, schedule.name, registered_ms - seconds * 1000)


async def test_the_operator_ticks_with_no_worker_running(
    redis_url: str,
    redis_conn: redis.asyncio.Redis,
) -> None:
    await _missed(redis_conn, _schedule(CatchUp.ALL), 5)
    servers = Servers()
    server = servers.acquire(redis_url)
    try:
        assert await server.tick_schedules(["q1", "q2"]) in (5, 6)
        assert await server.tick_schedules(["q1", "q2"]) in (0, 1)  # once per tick
    finally:
        await servers.close()
    ids = await redis_conn.lrange(Q1.ready[0], 0, -1)
    ticks = [int(await redis_conn.hget(Q1.task(i.decode()), "tick_ms")) for i in ids]
    assert len(set(ticks)) == len(ticks) and ticks == sorted(ticks)


@pytest.fixture
async def controller() -> AsyncIterator[tuple[ctl.TaskQueueController, FakeKube]]:
    kube = FakeKube()
    runtime = ctl.Runtime(
        kube=kube,
        metrics=OperatorMetrics(),  # type: ignore[arg-type]
        settings=ctl.ControllerSettings(max_backoff_s=10.0),
        # Schedules read on every pass: the tests register them between passes.
        servers=Servers(RedisSettings(timeout_s=2.0, schedules_reread_s=0.0)),
        clock=Clock(),
    )
    loop = ctl.TaskQueueController(runtime, NAME, NS, UID)
    yield loop, kube
    await loop.close()
    await runtime.servers.close()


async def test_a_tick_scales_a_taskqueue_from_zero(
    controller: tuple[ctl.TaskQueueController, FakeKube],
    redis_url: str,
    redis_conn: redis.asyncio.Redis,
) -> None:
    loop, kube = controller
    spec = spec_for(redis_url)
    await loop.reconcile_once(body(spec))
    assert kube.deployments["emails-worker"]["spec"]["replicas"] == 0
    await _missed(redis_conn, _schedule(), 30)  # catch_up="latest": one of the 30
    await loop.reconcile_once(body(spec))
    assert await redis_conn.llen(Q1.ready[0]) == 1
    assert kube.deployments["emails-worker"]["spec"]["replicas"] == 1
    assert kube.status["backlog"] == 1


async def test_an_idle_taskqueue_ticks_too(
    controller: tuple[ctl.TaskQueueController, FakeKube],
    redis_url: str,
    redis_conn: redis.asyncio.Redis,
) -> None:
    """A pass that finds an idle TaskQueue as it left it ends early, after ticking."""
    loop, kube = controller
    live = body(spec_for(redis_url))
    await loop.reconcile_once(live)
    loop.runtime.deployments.seen("ADDED", kube.deployments["emails-worker"])
    await loop.reconcile_once(live)  # idle at zero
    server = loop._server
    assert server is not None
    await _missed(redis_conn, _schedule(), 30)
    await loop.reconcile_once(live, ctl.Prefetched(server, await server.depths(["q1", "q2"])))
    assert await redis_conn.llen(Q1.ready[0]) == 1
    assert kube.deployments["emails-worker"]["spec"]["replicas"] == 1


async def _commands(conn: redis.asyncio.Redis, command: str) -> int:
    stats = await conn.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


async def test_schedules_are_read_again_when_a_registration_changes_them(
    redis_url: str, redis_conn: redis.asyncio.Redis
) -> None:
    servers = Servers()
    server = servers.acquire(redis_url)
    woken: list[str] = []
    try:
        server.watch(["q1"], woken.append)
        await until(lambda: server.subscribed, "the wake-up subscription")
        assert await server.tick_schedules(["q1"]) == 0  # none registered: read once
        reads = await _commands(redis_conn, "hgetall")
        assert await server.tick_schedules(["q1"]) == 0
        assert await _commands(redis_conn, "hgetall") == reads  # kept, not read again
        woken.clear()
        await _missed(redis_conn, _schedule(), 30)  # publishes the change
        await until(lambda: "q1" in woken, "the change published")
        assert await server.tick_schedules(["q1"]) == 1
    finally:
        await servers.close()
