"""The queue's semantics, each against a real Redis and a real worker."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

import pytest
import redis.asyncio

import corral
from corral import Client, Enqueue, InvalidTask, TaskCancelled, TaskFailed
from corral.depths import QueueDepth, read_queue_depths
from corral.keys import DEFAULT_PREFIX, queue_keys
from tests.support.inproc import running_worker
from tests.support.monitor import counting_commands


async def _order(redis_conn: redis.asyncio.Redis) -> list[str]:
    return [tag.decode() for tag in await redis_conn.lrange("test:order", 0, -1)]


async def test_priority_higher_first_fifo_within(
    client: Client, redis_url: str, redis_conn: redis.asyncio.Redis
) -> None:
    plan = [(f"p{p}-{i}", p) for i in range(3) for p in (0, 9, 4, 9, 0)]
    for tag, priority in plan:
        await client.enqueue("record", [tag], priority=priority)
    async with running_worker(redis_url, concurrency=1, batch_size=4):
        await _wait_done(client, len(plan))
    expected = [tag for tag, _ in sorted(plan, key=lambda tp: -tp[1])]  # stable: FIFO kept
    assert await _order(redis_conn) == expected


@pytest.mark.parametrize("priority", [-1, 10, 1.5, "5", True])
async def test_bad_priority_refused(client: Client, redis_conn: redis.asyncio.Redis,
                                    priority: object) -> None:
    with pytest.raises(InvalidTask, match="priority"):
        await client.enqueue("noop", priority=priority)  # type: ignore[arg-type]
    assert await redis_conn.dbsize() == 0


async def test_weights_share_and_work_conservation(
    client: Client, redis_url: str, redis_conn: redis.asyncio.Redis
) -> None:
    calls = [Enqueue("record", [f"{q}-{i}"], queue=q) for i in range(1000) for q in ("a", "b")]
    await client.enqueue_many(calls)
    async with running_worker(redis_url, queues={"a": 3, "b": 1}, concurrency=1, batch_size=20):
        await _wait_done(client, 2000, queues=("a", "b"))
    order = await _order(redis_conn)
    first = Counter(tag.split("-")[0] for tag in order[:1000])
    assert 712 <= first["a"] <= 788, first  # 750 ± 5%
    # Once a is empty, b gets every start (work-conserving), and every task ran.
    assert len(order) == 2000
    assert order[-1].startswith("b")


async def test_claim_is_atomic_between_workers(client: Client, redis_url: str) -> None:
    from corral.scripts import Scripts
    from corral_worker.broker import Broker

    await client.enqueue_many([Enqueue("noop", [i]) for i in range(2000)])
    conns = [redis.asyncio.Redis.from_url(redis_url) for _ in range(4)]
    brokers = [Broker(c, Scripts.register(c), f"w{i}") for i, c in enumerate(conns)]
    keys = queue_keys("default", DEFAULT_PREFIX)
    seen: list[str] = []

    async def drain(broker: Broker) -> None:
        while True:
            claimed = await broker.claim(keys, 37, 30_000)
            if not claimed.jobs:
                return
            seen.extend(job.id for job in claimed.jobs)

    await asyncio.gather(*(drain(b) for b in brokers))
    for c in conns:
        await c.aclose()
    assert len(seen) == 2000 and len(set(seen)) == 2000


async def test_idle_worker_sends_about_one_command_per_second(
        redis_url: str, redis_conn: redis.asyncio.Redis) -> None:
    async with running_worker(redis_url, queues={"a": 1, "b": 1}):
        for queue in ("a", "b"):  # started: the first heartbeat has registered it
            await _until_depth(redis_conn, lambda d: bool(d.workers), queue)
        async with counting_commands(redis_url) as counts:
            await asyncio.sleep(10.0)
    # Two queues, each: one upkeep script per 5 s and a safety-net claim per 30 s.
    assert sum(counts.values()) / 10.0 <= 1.0, counts


async def test_retries_then_dead_letter(client: Client, redis_url: str,
                                        redis_conn: redis.asyncio.Redis) -> None:
    handle = await client.enqueue("fail", ["boom"])
    async with running_worker(redis_url):
        with pytest.raises(TaskFailed) as info:
            await handle.result(timeout=20)
    assert info.value.state == "dead"
    assert info.value.type == "ValueError" and info.value.message == "boom"
    assert "raise ValueError(message)" in info.value.traceback
    assert int(await redis_conn.get("test:fail_attempts")) == 3
    assert await handle.status() == "dead"
    record = await redis_conn.hgetall(queue_keys("default", DEFAULT_PREFIX).task(handle.id))
    assert record[b"attempts"] == b"3"
    dead = queue_keys("default", DEFAULT_PREFIX).dead
    assert await redis_conn.zrange(dead, 0, -1) == [handle.id.encode()]


async def test_failed_without_dead_letter(client: Client, redis_url: str) -> None:
    handle = await client.enqueue("fail_no_dlq")
    async with running_worker(redis_url):
        with pytest.raises(TaskFailed) as info:
            await handle.result(timeout=20)
    assert info.value.state == "failed" and info.value.type == "RuntimeError"


async def test_timeout_is_a_failure_then_retried(client: Client, redis_url: str) -> None:
    handle = await client.enqueue("slow_with_timeout", [30])
    async with running_worker(redis_url):
        with pytest.raises(TaskFailed) as info:
            await handle.result(timeout=20)
    assert info.value.type == "TimeoutError" and info.value.state == "dead"


async def test_cancel_queued_never_runs(client: Client, redis_url: str,
                                        redis_conn: redis.asyncio.Redis) -> None:
    handle = await client.enqueue("record", ["never"])
    later = await client.enqueue("record", ["later"], delay=60)
    assert await handle.cancel() is True
    assert await later.cancel() is True
    assert await handle.status() == "cancelled"
    async with running_worker(redis_url):
        marker = await client.enqueue("record", ["marker"])
        await marker.result(timeout=10)
    assert await _order(redis_conn) == ["marker"]
    with pytest.raises(TaskCancelled):
        await handle.result(timeout=1)
    assert await handle.cancel() is False  # already finished


async def test_cancel_running_delivers_cancelled_error(
    client: Client, redis_url: str, redis_conn: redis.asyncio.Redis
) -> None:
    async with running_worker(redis_url):
        handle = await client.enqueue("sleep", [60, "cleaned"])
        # The task's own code is running (and so can clean up when cancelled).
        assert await redis_conn.blpop(["test:started"], timeout=10) is not None
        assert await handle.cancel() is True
        with pytest.raises(TaskCancelled):
            await handle.result(timeout=1.0)  # the cancel lands within 1 s
        assert await redis_conn.lrange("test:cleanup", 0, -1) == [b"cleaned"]
        await asyncio.sleep(0.3)
    assert await handle.status() == "cancelled"
    record = await redis_conn.hgetall(queue_keys("default", DEFAULT_PREFIX).task(handle.id))
    assert record[b"attempts"] == b"1"  # no retry


async def test_cancel_unknown_or_finished_is_false(client: Client, redis_url: str) -> None:
    assert await client.cancel("no-such-id") is False
    async with running_worker(redis_url):
        handle = await client.enqueue("noop", [1])
        assert await handle.result(timeout=10) == 1
        assert await handle.cancel() is False
        assert await handle.status() == "succeeded"


async def test_delayed_task_runs_on_time(client: Client, redis_url: str,
                                         redis_conn: redis.asyncio.Redis) -> None:
    async with running_worker(redis_url):
        handle = await client.enqueue("noop", [7], delay=1.5)
        assert await handle.status() == "scheduled"
        assert await handle.result(timeout=10) == 7
    record = await redis_conn.hgetall(queue_keys("default", DEFAULT_PREFIX).task(handle.id))
    waited_ms = int(record[b"started_ms"]) - int(record[b"enq_ms"])
    assert 1500 <= waited_ms <= 2500, waited_ms


async def test_results_have_a_ttl_and_wait_without_polling(
    client: Client, redis_url: str, redis_conn: redis.asyncio.Redis
) -> None:
    async with running_worker(redis_url):
        handle = await client.enqueue("echo", [1, "two"], {"three": [3]})
        async with counting_commands(redis_url) as counts:
            assert await handle.result(timeout=10) == {
                "args": [1, "two"], "kwargs": {"three": [3]}}
            slow = await client.enqueue("sleep", [1.0])
            assert await slow.result(timeout=10) == 1.0
    ttl_ms = await redis_conn.pttl(queue_keys("default", DEFAULT_PREFIX).task(handle.id))
    assert 590_000 < ttl_ms <= 600_000  # tests.apps.basic sets result_ttl_s=600
    # A second's wait costs a handful of commands, not a polling loop (the 1 s task's
    # start, prefetched -> running, is one finish call more). Counted as the clients send
    # them: servers differ in how they count the commands that scripts run.
    assert sum(counts.values()) < 15, counts
    with pytest.raises(TimeoutError):
        pending = await client.enqueue("noop", queue="nobody-serves-this")
        await pending.result(timeout=0.3)


async def test_deduplication_by_key(client: Client, redis_url: str) -> None:
    first = await client.enqueue("noop", [1], key="k1")
    again = await client.enqueue("noop", [2], key="k1")
    other = await client.enqueue("noop", [3], key="k2")
    assert first == again and first != other
    async with running_worker(redis_url):
        assert await first.result(timeout=10) == 1
    fresh = await client.enqueue("noop", [4], key="k1")
    assert fresh != first


async def test_arguments_must_be_json(client: Client, redis_conn: redis.asyncio.Redis) -> None:
    with pytest.raises(InvalidTask, match="JSON"):
        await client.enqueue("noop", [object()])
    with pytest.raises(InvalidTask, match="limit"):
        await client.enqueue("noop", ["x" * (1024 * 1024 + 1)])
    with pytest.raises(InvalidTask):
        await client.enqueue_many([Enqueue("noop", [1]), Enqueue("noop", [{1, 2}])])
    assert await redis_conn.dbsize() == 0


async def test_bad_input_is_dead_lettered_and_worker_goes_on(
    client: Client, redis_url: str, redis_conn: redis.asyncio.Redis
) -> None:
    keys = queue_keys("default", DEFAULT_PREFIX)
    bad_payload = await client.enqueue("noop", [1])
    await redis_conn.hset(keys.task(bad_payload.id), "payload", b"\xff{not json")
    unknown = await client.enqueue("no_such_task")
    await redis_conn.rpush(keys.ready[0], "stray-id-without-record")
    await redis_conn.rpush(keys.ready[3], b"\xff\xfe not an id {x}")
    await redis_conn.set(keys.task("wrong-type"), "a string, not a hash")
    await redis_conn.rpush(keys.ready[0], "wrong-type")
    raises = await client.enqueue("fail_no_dlq")
    bad_result = await client.enqueue("bad_result")
    good = await client.enqueue("noop", [42])
    async with running_worker(redis_url):
        assert await good.result(timeout=10) == 42
        for handle, reason in [(bad_payload, "PayloadError"), (unknown, "UnknownTask")]:
            with pytest.raises(TaskFailed) as info:
                await handle.result(timeout=10)
            assert info.value.state == "dead" and info.value.type == reason
        with pytest.raises(TaskFailed):
            await raises.result(timeout=10)
        with pytest.raises(TaskFailed) as info:
            await bad_result.result(timeout=10)
        assert info.value.type == "TypeError" and "JSON" in info.value.message
    dead = {i.decode() for i in await redis_conn.zrange(keys.dead, 0, -1)}
    assert {bad_payload.id, unknown.id, "stray-id-without-record", bad_result.id} <= dead
    stray = await redis_conn.hgetall(keys.task("stray-id-without-record"))
    assert stray[b"reason"] == b"no task record for this id"
    malformed = [i for i in dead if i.startswith("malformed-")]
    assert len(malformed) == 2  # the undecodable id and the one whose key is not a hash
    record = await redis_conn.hgetall(keys.task(malformed[0]))
    assert record[b"reason"] == b"malformed task id in the ready list"


async def test_sync_functions_run_in_threads(client: Client, redis_url: str) -> None:
    async with running_worker(redis_url, concurrency=4):
        handles = [await client.enqueue("blocking", [0.3]) for _ in range(4)]
        results = await asyncio.gather(*(h.result(timeout=10) for h in handles))
    assert results == ["slept 0.3"] * 4


async def test_registry_and_depths(client: Client, redis_url: str,
                                   redis_conn: redis.asyncio.Redis) -> None:
    async with running_worker(redis_url, worker_id="pod-a", concurrency=2, lease_s=3):
        for _ in range(2):
            await client.enqueue("sleep", [2.0])
        await client.enqueue("noop", priority=7, delay=60)
        depths = await _until_depth(  # a heartbeat has reported both running
            redis_conn, lambda d: [w.in_flight for w in d.workers] == [2])
        assert depths.in_flight == 2 and depths.scheduled == 1 and depths.backlog == 0
        assert [(w.worker_id, w.in_flight, w.concurrency) for w in depths.workers] == [
            ("pod-a", 2, 2)
        ]
    depths = (await read_queue_depths(redis_conn, ["default"]))["default"]
    assert depths.workers == ()  # deregistered on shutdown


async def test_no_heartbeat_registers_the_worker_again_after_it_left(
        redis_url: str, redis_conn: redis.asyncio.Redis) -> None:
    """A slow shutdown hook spans several heartbeat periods (lease 2 s: one every
    0.67 s); none of them may put the worker back in the registry."""
    async def close_slowly() -> None:
        await asyncio.sleep(1.5)

    app = corral.App(on_shutdown=[close_slowly])
    async with running_worker(redis_url, app, worker_id="pod-b", lease_s=2):
        await _until_depth(redis_conn, lambda d: [w.worker_id for w in d.workers] == ["pod-b"])
    depths = (await read_queue_depths(redis_conn, ["default"]))["default"]
    assert depths.workers == ()
    assert await redis_conn.exists(queue_keys("default", DEFAULT_PREFIX).worker("pod-b")) == 0


async def _until_depth(redis_conn: redis.asyncio.Redis, check: Callable[[QueueDepth], bool],
                       queue: str = "default", timeout_s: float = 10) -> QueueDepth:
    async with asyncio.timeout(timeout_s):
        while True:
            depth = (await read_queue_depths(redis_conn, [queue]))[queue]
            if check(depth):
                return depth
            await asyncio.sleep(0.05)


async def _wait_done(client: Client, count: int, queues: tuple[str, ...] = ("default",),
                     timeout_s: float = 60) -> None:
    async with asyncio.timeout(timeout_s):
        while True:
            depths = await read_queue_depths(client.redis, queues)
            if all(d.backlog == 0 and d.in_flight == 0 for d in depths.values()):
                return
            await asyncio.sleep(0.05)
