"""Rate and concurrency limits, enforced in Redis across real worker processes."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest
import redis.asyncio

from corral import Client, Enqueue
from corral.depths import read_queue_depths
from corral.keys import DEFAULT_PREFIX, queue_keys
from corral.scripts import Scripts
from corral_worker.broker import Broker, Outcome
from corral_worker.outcome import Finish
from tests.apps.limits import app
from tests.support.workers import WorkerProcess

KEYS = queue_keys("default", DEFAULT_PREFIX)
LEASE_S = 2.0


@dataclass(frozen=True, slots=True)
class Run:
    task_id: str
    tag: str
    started_s: float
    ended_s: float | None  # None: it never ended (its worker was killed)


@pytest.fixture
async def limited_client(redis_url: str) -> Client:
    os.environ["CORRAL_TEST_REDIS_URL"] = redis_url
    client = Client.from_url(redis_url, app=app)
    yield client  # type: ignore[misc]
    await client.close()


def _start(workers: list[WorkerProcess], url: str, count: int, *args: str) -> None:
    new = [WorkerProcess(url, app="tests.apps.limits:app", worker_id=f"w{len(workers) + i}",
                         args=("--lease-seconds", str(LEASE_S), *args)) for i in range(count)]
    workers.extend(new)
    for worker in new:
        worker.wait_started()


async def _runs(conn: redis.asyncio.Redis) -> list[Run]:
    started: dict[str, tuple[str, float]] = {}
    runs: list[Run] = []
    for raw in await conn.lrange("test:events", 0, -1):
        kind, task_id, tag, at = raw.decode().split()
        if kind == "start":
            if task_id in started:  # ran again: the earlier attempt never ended
                runs.append(Run(task_id, started[task_id][0], started[task_id][1], None))
            started[task_id] = (tag, float(at))
        else:
            tag, started_s = started.pop(task_id)
            runs.append(Run(task_id, tag, started_s, float(at)))
    runs += [Run(i, tag, at, None) for i, (tag, at) in started.items()]
    return runs


def _max_overlap(runs: list[Run], open_until_s: float) -> int:
    """Most runs at once; a run that never ended counts until ``open_until_s``."""
    edges = []
    for run in runs:
        edges += [(run.started_s, 1), (run.ended_s or open_until_s, -1)]
    most = now = 0
    for _, step in sorted(edges, key=lambda e: (e[0], e[1])):  # ends before starts
        now += step
        most = max(most, now)
    return most


async def _until(check: Callable[[], Awaitable[bool]], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def _attempts(conn: redis.asyncio.Redis, task_id: str) -> int:
    return int(await conn.hget(KEYS.task(task_id), "attempts") or 0)


async def test_concurrency_limit_holds_across_three_workers_through_a_sigkill(
    limited_client: Client, redis_url: str, redis_conn: redis.asyncio.Redis,
    workers: list[WorkerProcess],
) -> None:
    _start(workers, redis_url, 3)
    handles = await limited_client.enqueue_many(
        [Enqueue("two_at_a_time", [f"t{i}", 0.4]) for i in range(30)])

    async def one_running() -> bool:
        return any(run.ended_s is None for run in await _runs(redis_conn))

    await _until(one_running)
    victim_id = next(r.task_id for r in await _runs(redis_conn) if r.ended_s is None)
    holders = await redis_conn.hgetall(KEYS.task(victim_id))
    victim = next(w for w in workers if holders[b"token"].decode().startswith(
        f"{w.command[w.command.index('--worker-id') + 1]}/"))
    victim.kill()
    killed_s = time.time()
    await asyncio.gather(*(h.result(timeout=120) for h in handles))

    runs = await _runs(redis_conn)
    assert _max_overlap(runs, open_until_s=killed_s) == 2
    # The killed runs' slots stay taken until their lease runs out (at least a lease
    # less a heartbeat after the kill), then come back.
    killed = [r for r in runs if r.ended_s is None and r.started_s < killed_s]
    assert killed
    held_s = LEASE_S - LEASE_S / 3
    meanwhile = [r for r in runs if killed_s < r.started_s < killed_s + held_s - 0.1]
    assert _max_overlap(meanwhile, open_until_s=0) <= 2 - len(killed)
    late = [r for r in runs if r.started_s > killed_s + LEASE_S + 1]
    assert _max_overlap(late, open_until_s=0) == 2
    # Waiting for a slot is not an attempt; only the killed tasks ran twice.
    killed_ids = {r.task_id for r in killed}
    for handle in handles:
        assert await _attempts(redis_conn, handle.id) == (2 if handle.id in killed_ids else 1)
    assert await redis_conn.exists(f"{KEYS.prefix}lim:c:two_at_a_time") == 0


async def test_rate_limit_of_50_per_second_runs_500_in_10_seconds(
    limited_client: Client, redis_url: str, redis_conn: redis.asyncio.Redis,
    workers: list[WorkerProcess],
) -> None:
    _start(workers, redis_url, 3)
    handles = await limited_client.enqueue_many(
        [Enqueue("fifty_per_second", [f"t{i}"]) for i in range(800)])

    async def started() -> bool:
        return await redis_conn.llen("test:events") > 0

    await _until(started)
    first_s = min(r.started_s for r in await _runs(redis_conn))
    await asyncio.sleep(max(0.0, first_s + 10.5 - time.time()))
    runs = await _runs(redis_conn)
    in_window = [r for r in runs if r.started_s < first_s + 10]
    assert 475 <= len(in_window) <= 525, len(in_window)
    for run in runs[:50]:  # deferred while over the limit: not an attempt
        assert await _attempts(redis_conn, run.task_id) == 1
    depth = (await read_queue_depths(redis_conn, ["default"]))["default"]
    assert depth.limited > 0 and depth.backlog < len(handles) - len(runs)


async def test_a_rate_limited_backlog_does_not_hold_up_other_tasks(
    limited_client: Client, redis_url: str, redis_conn: redis.asyncio.Redis,
    workers: list[WorkerProcess],
) -> None:
    await limited_client.enqueue_many(
        [Enqueue("fifty_per_second", [f"slow{i}"]) for i in range(300)])
    others = await limited_client.enqueue_many(
        [Enqueue("unlimited", [f"free{i}"]) for i in range(50)])
    _start(workers, redis_url, 1)
    await asyncio.gather(*(h.result(timeout=60) for h in others))
    limited_runs = [r for r in await _runs(redis_conn) if r.tag.startswith("slow")]
    assert len(limited_runs) < 300  # the others did not wait for the limited backlog


async def test_per_key_limits_are_independent_across_keys(
    limited_client: Client, redis_url: str, redis_conn: redis.asyncio.Redis,
    workers: list[WorkerProcess],
) -> None:
    _start(workers, redis_url, 2)
    calls = [Enqueue("one_per_tenant", [tenant, str(i), 0.3])
             for i in range(4) for tenant in ("a", "b")]
    calls += [Enqueue("five_per_second_per_tenant", [tenant, str(i)])
              for i in range(10) for tenant in ("a", "b")]
    handles = await limited_client.enqueue_many(calls)
    await asyncio.gather(*(h.result(timeout=60) for h in handles))
    runs = await _runs(redis_conn)

    def of(prefix: str) -> list[Run]:
        return [r for r in runs if r.tag.startswith(prefix)]

    concurrent = [r for r in runs if r.ended_s is not None and r.ended_s - r.started_s > 0.2]
    for tenant in ("a", "b"):
        assert _max_overlap([r for r in concurrent if r.tag.startswith(f"{tenant}:")], 0) == 1
    assert _max_overlap(concurrent, 0) == 2  # a's limit does not hold b back
    for tenant in ("a", "b"):
        rated = [r for r in of(f"{tenant}:") if r not in concurrent]
        assert len(rated) == 10
        # Five per second per tenant, by Redis's clock at each claim: any six claims span
        # a second, less the lateness a reserved time allows (0.25 s).
        claims_ms = sorted([int(await redis_conn.hget(KEYS.task(r.task_id), "started_ms"))
                            for r in rated])
        assert min(b - a for a, b in zip(claims_ms, claims_ms[5:], strict=False)) >= 740
    starts_a = [r.started_s for r in of("a:") if r not in concurrent]
    starts_b = [r.started_s for r in of("b:") if r not in concurrent]
    assert min(starts_b) < max(starts_a) and min(starts_a) < max(starts_b)


# -- the scripts themselves, through the worker's broker ----------------------------------


@pytest.fixture
async def broker(redis_conn: redis.asyncio.Redis) -> Broker:
    return Broker(redis_conn, Scripts.register(redis_conn), "holder")


async def test_a_finished_slot_moves_the_next_waiter_to_the_head_of_the_queue(
    limited_client: Client, redis_conn: redis.asyncio.Redis, broker: Broker
) -> None:
    handles = await limited_client.enqueue_many(
        [Enqueue("two_at_a_time", [f"t{i}"]) for i in range(5)])
    other = await limited_client.enqueue("unlimited", ["x"])
    claimed = await broker.claim(KEYS, 10, 30_000)
    assert [j.id for j in claimed.jobs] == [handles[0].id, handles[1].id, other.id]
    depth = (await read_queue_depths(redis_conn, ["default"]))["default"]
    assert depth.limited == 3 and depth.backlog == 0 and depth.in_flight == 3
    assert [await h.status() for h in handles[2:]] == ["queued"] * 3
    assert (await broker.claim(KEYS, 10, 30_000)).jobs == []

    await broker.finish(KEYS, [Outcome(claimed.jobs[0], Finish.SUCCEEDED)])
    again = await broker.claim(KEYS, 10, 30_000)
    assert [j.id for j in again.jobs] == [handles[2].id]
    assert again.jobs[0].attempts == 1
    # Cancelled while it waited: skipped when its turn comes, and no longer counted.
    assert await limited_client.cancel(handles[3].id)
    await broker.finish(KEYS, [Outcome(again.jobs[0], Finish.RETRY, delay_ms=60_000)])
    last = await broker.claim(KEYS, 10, 30_000)
    assert [j.id for j in last.jobs] == [handles[4].id]
    depth = (await read_queue_depths(redis_conn, ["default"]))["default"]
    assert depth.limited == 0


async def test_a_lease_that_runs_out_gives_its_slot_back(
    limited_client: Client, redis_conn: redis.asyncio.Redis, broker: Broker
) -> None:
    handles = await limited_client.enqueue_many(
        [Enqueue("one_per_tenant", ["a", str(i)]) for i in range(2)])
    claimed = await broker.claim(KEYS, 10, 100)  # a lease of 0.1 s that nobody renews
    assert [j.id for j in claimed.jobs] == [handles[0].id]
    await asyncio.sleep(0.2)
    await broker.heartbeat(KEYS, "w2", [], {}, 30_000, 30_000, 30_000)
    # Requeued at the head, it takes its slot again; the waiter, moved back into the
    # queue by the slot's release, waits again.
    again = await broker.claim(KEYS, 10, 30_000)
    assert [(j.id, j.attempts) for j in again.jobs] == [(handles[0].id, 2)]
    assert await handles[1].status() == "queued"
    assert await redis_conn.zcard(f"{KEYS.prefix}lim:c:one_per_tenant|a") == 1


async def test_a_rate_limit_defers_to_reserved_times_that_cancel_and_claims_honour(
    limited_client: Client, redis_conn: redis.asyncio.Redis, broker: Broker
) -> None:
    handles = await limited_client.enqueue_many(
        [Enqueue("fifty_per_second", [f"t{i}"]) for i in range(3)])
    claimed = await broker.claim(KEYS, 10, 30_000)
    assert [j.id for j in claimed.jobs] == [handles[0].id]
    assert [await h.status() for h in handles[1:]] == ["scheduled", "scheduled"]
    times = [await redis_conn.zscore(KEYS.scheduled, h.id) for h in handles[1:]]
    assert times[0] is not None and times[1] is not None
    assert times[1] - times[0] == pytest.approx(20, abs=0.01)  # one interval apart
    assert claimed.next_due_ms == int(times[0])
    assert await limited_client.cancel(handles[1].id)
    assert (await read_queue_depths(redis_conn, ["default"]))["default"].limited == 1
    await asyncio.sleep(0.1)
    again = await broker.claim(KEYS, 10, 30_000)
    assert [(j.id, j.attempts) for j in again.jobs] == [(handles[2].id, 1)]
    assert (await read_queue_depths(redis_conn, ["default"]))["default"].limited == 0


async def test_a_waiter_cancelled_after_its_turn_came_hands_the_slot_on(
    limited_client: Client, broker: Broker
) -> None:
    handles = await limited_client.enqueue_many(
        [Enqueue("one_per_tenant", ["a", str(i)]) for i in range(3)])
    first = await broker.claim(KEYS, 10, 30_000)
    await broker.finish(KEYS, [Outcome(first.jobs[0], Finish.SUCCEEDED)])  # moves [1] up
    assert await limited_client.cancel(handles[1].id)
    again = await broker.claim(KEYS, 10, 30_000)
    assert [j.id for j in again.jobs] == [handles[2].id]  # not stuck behind the cancelled
