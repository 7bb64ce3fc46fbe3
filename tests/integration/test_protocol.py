"""The Redis protocol itself: what each script touches and what it costs."""

from __future__ import annotations

import redis.asyncio

from corral import Client, Enqueue
from corral.admin import dlq_chunks
from corral.depths import read_queue_depths
from corral.keys import DEFAULT_PREFIX, queue_keys
from corral.periodic import CatchUp, Every, Schedule
from corral.schedules import register, tick
from corral.scripts import NAMES, Script, Scripts, source
from corral_worker.broker import Broker, Outcome
from corral_worker.outcome import Finish
from tests.support.inproc import running_worker

KEYS = queue_keys("default", DEFAULT_PREFIX)


async def _calls(conn: redis.asyncio.Redis, command: str) -> int:
    stats = await conn.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


async def test_cancelling_queued_tasks_does_not_scan_the_ready_list(
    redis_url: str, redis_conn: redis.asyncio.Redis
) -> None:
    async with (
        Client.from_url(redis_url) as client,
        Client.from_url(redis_url, result_ttl_s=0) as forgetful,
    ):
        handles = [await client.enqueue("record", [tag]) for tag in "abcdef"]
        await redis_conn.config_resetstat()
        assert await client.cancel(handles[1].id) is True
        # A record kept for no time at all is gone at once; the id stays in the list.
        assert await forgetful.cancel(handles[3].id) is True
        assert await _calls(redis_conn, "lrem") == 0
        assert await handles[1].status() == "cancelled"
        assert await handles[3].status() == "unknown"
        assert await client.cancel(handles[1].id) is False  # once is enough
        depth = (await read_queue_depths(redis_conn, ["default"]))["default"]
        assert depth.ready == 4 and depth.backlog == 4
        async with running_worker(redis_url, concurrency=1):
            for i in (0, 2, 4, 5):
                await handles[i].result(timeout=20)
        order = [tag.decode() for tag in await redis_conn.lrange("test:order", 0, -1)]
        assert order == ["a", "c", "e", "f"]  # the cancelled ones never ran
        assert await redis_conn.zcard(KEYS.dead) == 0  # nor were they taken for junk
        assert await redis_conn.scard(KEYS.cancelled) == 0
        assert await handles[1].status() == "cancelled"


# A stand-in for a server that enforces the EVAL key contract: every key a command
# touches is checked against KEYS, and the undeclared ones are written down.
_CHECKED = """
local real_redis = redis
local declared = {}
for i = 1, #KEYS do declared[KEYS[i]] = true end
local function check(args)
  if string.upper(args[1]) == 'TIME' then return end
  local last = 2
  if string.upper(args[1]) == 'DEL' or string.upper(args[1]) == 'EXISTS' then last = #args end
  for i = 2, last do
    if not declared[args[i]] then real_redis.call('RPUSH', 'test:undeclared', args[i]) end
  end
end
local redis = setmetatable({
  call = function(...) check({...}); return real_redis.call(...) end,
  pcall = function(...) check({...}); return real_redis.pcall(...) end,
}, {__index = real_redis})
"""


def _checked_scripts(conn: redis.asyncio.Redis) -> Scripts:
    return Scripts(
        **{
            name: Script(conn.register_script(_CHECKED + source(name)), cluster=False)
            for name in NAMES
        }
    )


async def _undeclared(conn: redis.asyncio.Redis) -> list[str]:
    keys = [k.decode() for k in await conn.lrange("test:undeclared", 0, -1)]
    await conn.delete("test:undeclared")
    return keys


async def test_scripts_touch_only_declared_keys_except_records_of_ids_from_redis(
    redis_url: str, redis_conn: redis.asyncio.Redis
) -> None:
    conn = redis_conn
    scripts = _checked_scripts(conn)
    client = Client(redis.asyncio.Redis.from_url(redis_url))
    client.scripts = scripts
    broker = Broker(conn, scripts, "holder")
    try:
        # Every key these calls touch is known to the caller, so all are in KEYS.
        handles = await client.enqueue_many([Enqueue("noop", [i]) for i in range(5)])
        keyed = await client.enqueue("noop", key="k")
        later = await client.enqueue("noop", delay=60)
        assert await client.cancel(handles[4].id) and await client.cancel(later.id)
        beat = Schedule(
            name="beat",
            task="noop",
            queue="default",
            cadence=Every(1000),
            args=(),
            kwargs={},
            priority=5,
            catch_up=CatchUp.ALL,
            max_catch_up=10,
        )
        registered_ms = await register(scripts, [beat], ["default"], prefix=DEFAULT_PREFIX)
        await conn.hset(KEYS.ticks, "beat", registered_ms - 5000)
        ticked = await tick(
            scripts, beat, registered_ms - 5000, registered_ms, prefix=DEFAULT_PREFIX
        )
        assert len(ticked.ids) == 5
        assert await _undeclared(conn) == []
        await conn.delete(*(KEYS.task(i) for i in ticked.ids), KEYS.ready[5])

        # Claiming pops ids from Redis: only their records are derived (from KEYS[11]).
        claimed = await broker.claim(KEYS, 10, 30_000)
        assert {job.id for job in claimed.jobs} == {h.id for h in [*handles[:4], keyed]}
        popped = {KEYS.task(h.id) for h in [*handles, keyed]}  # the cancelled one too
        assert set(await _undeclared(conn)) <= popped

        jobs = claimed.jobs
        await broker.heartbeat(KEYS, "w-1", jobs, {"running": 1}, 30_000, 60_000, 1000)
        await broker.finish(
            KEYS,
            [
                Outcome(jobs[0], Finish.SUCCEEDED, b"1", ttl_ms=1000),
                Outcome(jobs[1], Finish.FAILED, b"{}", ttl_ms=1000),
                Outcome(jobs[2], Finish.DEAD, b"{}", ttl_ms=60_000),
                Outcome(jobs[3], Finish.RETRY, b"{}", delay_ms=60_000),
                Outcome(jobs[4], Finish.REQUEUE, give_back=True),
            ],
        )
        await client.cancel(jobs[3].id)
        dead_id = jobs[2].id
        changes = [
            c async for c in dlq_chunks(conn, "default", "requeue", [dead_id], scripts=scripts)
        ]
        assert changes[0].changed == 1
        assert await _undeclared(conn) == []

        # Ids read from Redis itself: the de-duplication hash, the worker registry, the
        # dead-letter queue. Their records are the only keys built inside a script.
        await client.enqueue("noop", key="k")
        await read_queue_depths(conn, ["default"], scripts)
        again = await broker.claim(KEYS, 10, 30_000)
        await broker.finish(
            KEYS, [Outcome(job, Finish.DEAD, b"{}", ttl_ms=60_000) for job in again.jobs]
        )
        [c async for c in dlq_chunks(conn, "default", "purge", scripts=scripts)]
        derived = await _undeclared(conn)
        assert derived, "the exceptions were exercised"
        assert all(key.startswith((f"{KEYS.prefix}t:", f"{KEYS.prefix}w:")) for key in derived)
    finally:
        await client.close()


async def test_scripts_share_one_prelude() -> None:
    # Each rule is written once: no script repeats the clock or the priority clamp.
    for name in NAMES:
        own = source(name).split(f"-- {name}.lua\n", 1)[1]
        assert "redis.call('TIME')" not in own and "p > 9" not in own, name
    assert source("claim").count("redis.call('TIME')") == 1
