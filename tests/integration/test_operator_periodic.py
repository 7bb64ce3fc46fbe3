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
from tests.unit.test_operator_controller import NAME, NS, UID, Clock, FakeKube, body, spec_for

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
        servers=Servers(RedisSettings(timeout_s=2.0)),
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
