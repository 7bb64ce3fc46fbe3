"""Periodic tasks on a real Redis: the tick script, and real worker processes ticking."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import redis.asyncio

from corral.app import load_app
from corral.keys import DEFAULT_PREFIX, queue_keys
from corral.periodic import CatchUp, Every, Schedule
from corral.schedules import register, registered, tick
from corral.scripts import Scripts
from tests.integration.test_cli import corral
from tests.support.workers import WorkerProcess

KEYS = queue_keys("default", DEFAULT_PREFIX)


def _every_second(name: str = "beat", catch_up: CatchUp = CatchUp.ALL) -> Schedule:
    return Schedule(
        name=name,
        task="noop",
        queue="default",
        cadence=Every(1000),
        args=(3,),
        kwargs={},
        priority=2,
        catch_up=catch_up,
        max_catch_up=100,
    )


async def _redis_ms(conn: redis.asyncio.Redis) -> int:
    seconds, micros = await conn.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def test_each_tick_is_enqueued_once_whoever_ticks(
    redis_conn: redis.asyncio.Redis,
) -> None:
    scripts = Scripts.register(redis_conn)
    schedule = _every_second()
    registered_ms = await register(scripts, [schedule], ["default"], prefix=DEFAULT_PREFIX)
    # Ticks due since registration: wait until two whole seconds have passed.
    await asyncio.sleep(2.1 - (registered_ms % 1000) / 1000)
    now_ms = await _redis_ms(redis_conn)
    first = await tick(scripts, schedule, registered_ms, now_ms, prefix=DEFAULT_PREFIX)
    again = await tick(
        scripts, schedule, registered_ms, now_ms, prefix=DEFAULT_PREFIX
    )  # a second worker, late
    assert len(first.ids) == 2 and again.ids == ()
    assert first.last_ms == again.last_ms == now_ms // 1000 * 1000
    tick_ms = [int(await redis_conn.hget(KEYS.task(i), "tick_ms")) for i in first.ids]
    assert tick_ms == [first.last_ms - 1000, first.last_ms]
    record = await redis_conn.hgetall(KEYS.task(first.ids[0]))
    assert record[b"name"] == b"noop" and record[b"state"] == b"queued"
    assert record[b"prio"] == b"2" and record[b"schedule"] == b"beat"
    assert await redis_conn.lrange(KEYS.ready[2], 0, -1) == [i.encode() for i in first.ids]


async def test_a_tick_ahead_of_redis_clock_waits(redis_conn: redis.asyncio.Redis) -> None:
    scripts = Scripts.register(redis_conn)
    schedule = _every_second()
    registered_ms = await register(scripts, [schedule], ["default"], prefix=DEFAULT_PREFIX)
    # A caller whose clock runs 5 s ahead sees ticks that are not due yet.
    ahead = await tick(
        scripts, schedule, registered_ms, registered_ms + 5000, prefix=DEFAULT_PREFIX
    )
    assert ahead.ids == () and ahead.last_ms == registered_ms


async def test_a_dropped_schedule_is_removed_and_not_ticked(
    redis_conn: redis.asyncio.Redis,
) -> None:
    scripts = Scripts.register(redis_conn)
    old, kept = _every_second("old"), _every_second("kept")
    await register(scripts, [old, kept], ["default"], prefix=DEFAULT_PREFIX)
    await register(
        scripts, [kept], ["default"], prefix=DEFAULT_PREFIX
    )  # the next version of the app
    assert [
        r.schedule.name for r in await registered(redis_conn, "default", prefix=DEFAULT_PREFIX)
    ] == ["kept"]
    now_ms = await _redis_ms(redis_conn)
    ticked = await tick(scripts, old, now_ms - 10_000, now_ms, prefix=DEFAULT_PREFIX)
    assert not ticked.registered and ticked.ids == ()
    assert await redis_conn.hget(KEYS.ticks, "old") is None


@pytest.mark.slow
async def test_three_workers_run_every_tick_once_through_a_sigkill(
    redis_url: str,
    redis_conn: redis.asyncio.Redis,
    workers: list[WorkerProcess],
) -> None:
    for n in range(3):
        workers.append(WorkerProcess(redis_url, app="tests.apps.periodic:app", worker_id=f"w{n}"))
    for worker in workers:
        worker.wait_started()
    start_ms = await _redis_ms(redis_conn)
    await asyncio.sleep(5)
    workers[0].kill()  # SIGKILL, midway
    await asyncio.sleep(5)
    end_ms = start_ms + 10_000
    # Tasks of the last ticks may still be running: wait until those of the window ran.
    deadline = time.monotonic() + 30
    while True:
        ids = [i.decode() for i in await redis_conn.lrange("test:periodic", 0, -1)]
        ticks = {i: int(await redis_conn.hget(KEYS.task(i), "tick_ms")) for i in ids}
        if max(ticks.values(), default=0) >= end_ms or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    in_window = sorted(t for t in ticks.values() if start_ms < t <= end_ms)
    assert 9 <= len(in_window) <= 11, in_window
    assert len(set(ids)) == len(ids), "a tick's task ran twice"
    assert len(set(ticks.values())) == len(ticks), "a tick was enqueued twice"
    all_ticks = sorted(ticks.values())
    assert all_ticks == list(range(all_ticks[0], all_ticks[-1] + 1000, 1000)), "tick skipped"
    late_ms = sorted(
        [int(await redis_conn.hget(KEYS.task(i), "enq_ms")) - t for i, t in ticks.items()]
    )
    print(
        f"\ntick to enqueue: median {late_ms[len(late_ms) // 2]} ms, "
        f"max {late_ms[-1]} ms over {len(late_ms)} ticks"
    )
    for worker in workers[1:]:
        assert worker.terminate() == 0


async def test_inspect_lists_schedules_with_last_and_next_tick(
    redis_url: str,
    redis_conn: redis.asyncio.Redis,
) -> None:
    app = load_app("tests.apps.periodic:app")
    scripts = Scripts.register(redis_conn)
    registered_ms = await register(
        scripts, list(app.schedules.values()), ["default"], prefix=DEFAULT_PREFIX
    )
    now_ms = await _redis_ms(redis_conn)
    await asyncio.sleep(1.1)
    ticked = await tick(
        scripts, app.schedules["every-second"], registered_ms, now_ms + 1100, prefix=DEFAULT_PREFIX
    )
    assert ticked.ids
    as_json = json.loads(corral("inspect", "--json", url=redis_url).stdout)
    [listed] = as_json["default"]["schedules"]
    assert listed["name"] == "every-second" and listed["when"] == "every 1s"
    assert listed["catch_up"] == "all" and listed["last_tick_ms"] == ticked.last_ms
    assert listed["next_tick_ms"] > ticked.last_ms and listed["next_tick_ms"] % 1000 == 0
    text = corral("inspect", url=redis_url).stdout
    assert "1 periodic tasks" in text and "every-second" in text and "next=" in text


async def test_a_lost_last_tick_counts_from_now(redis_conn: redis.asyncio.Redis) -> None:
    scripts = Scripts.register(redis_conn)
    schedule = _every_second()
    registered_ms = await register(scripts, [schedule], ["default"], prefix=DEFAULT_PREFIX)
    await redis_conn.hdel(KEYS.ticks, schedule.name)
    ticked = await tick(
        scripts, schedule, registered_ms - 5000, registered_ms + 100, prefix=DEFAULT_PREFIX
    )
    assert ticked.ids == () and ticked.last_ms == ticked.now_ms
    assert int(await redis_conn.hget(KEYS.ticks, schedule.name)) == ticked.now_ms
