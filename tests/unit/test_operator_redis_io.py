"""The operator's Redis reads against a real Redis: one pipeline per server for the
reads of a window, one in flight at a time, and failures as RedisUnavailable."""

from __future__ import annotations

import asyncio

import pytest

from corral.client import Client
from corral_operator.redis_io import RedisSettings, RedisUnavailable, Servers


async def test_reads_of_one_window_share_one_round_trip(client: Client, redis_url: str) -> None:
    await client.enqueue_many([{"name": "noop", "queue": "a"}] * 3)
    servers = Servers()
    server = servers.acquire(redis_url)
    try:
        found = await asyncio.gather(*(server.depths(["a", f"q{i}"]) for i in range(50)))
        assert server.round_trips == 1
        assert all(f["a"].backlog == 3 and set(f) == {"a", f"q{i}"} for i, f in enumerate(found))
    finally:
        await servers.release(server)


async def test_reads_asked_for_while_a_pipeline_is_out_go_in_the_next(redis_url: str) -> None:
    servers = Servers(RedisSettings(batch_window_s=0.0))
    server = servers.acquire(redis_url)
    try:
        first = [asyncio.create_task(server.depths([f"a{i}"])) for i in range(10)]
        for _ in range(100):  # until the first pipeline is out
            if server.round_trips:
                break
            await asyncio.sleep(0)
        second = [asyncio.create_task(server.depths([f"b{i}"])) for i in range(10)]
        for _ in range(3):  # with no window, a new pipeline could start at each turn
            await asyncio.sleep(0)
        third = [asyncio.create_task(server.depths([f"c{i}"])) for i in range(10)]
        await asyncio.gather(*first, *second, *third)
        assert server.round_trips == 2
    finally:
        await servers.release(server)


async def test_one_client_per_url_while_in_use(redis_url: str) -> None:
    servers = Servers()
    one, two = servers.acquire(redis_url), servers.acquire(redis_url)
    assert one is two
    await servers.release(one)
    assert servers.acquire(redis_url) is two  # still used by the second
    await servers.close()


async def test_an_unreachable_redis_fails_every_read_with_a_reason() -> None:
    servers = Servers(RedisSettings(timeout_s=2.0))
    server = servers.acquire("redis://127.0.0.1:1/0")
    try:
        results = await asyncio.gather(server.depths(["a"]), server.depths(["b"]),
                                       return_exceptions=True)
        assert all(isinstance(r, RedisUnavailable) for r in results)
        assert all(str(r).startswith("redis: ") and len(str(r)) > len("redis: ")
                   for r in results)
    finally:
        await servers.close()


@pytest.mark.parametrize("n", [1, 3])
async def test_more_queues_than_a_pipeline_holds_are_split(redis_url: str, n: int) -> None:
    servers = Servers(RedisSettings(batch_max_queues=2))
    server = servers.acquire(redis_url)
    try:
        found = await server.depths([f"q{i}" for i in range(2 * n)])
        assert len(found) == 2 * n and server.round_trips == n
    finally:
        await servers.close()


async def test_a_server_reads_and_watches_its_prefix_only(redis_url: str) -> None:
    async with Client.from_url(redis_url, prefix="team-a") as team_a, \
            Client.from_url(redis_url, prefix="team-b") as team_b:
        await team_a.enqueue_many([{"name": "noop"}] * 3)
        await team_b.enqueue("noop")
        servers = Servers()
        a, b = servers.acquire(redis_url, prefix="team-a"), servers.acquire(redis_url,
                                                                            prefix="team-b")
        plain = servers.acquire(redis_url)
        try:
            assert len({id(a), id(b), id(plain)}) == 3  # one client per URL and prefix
            assert (await a.depths(["default"]))["default"].backlog == 3
            assert (await b.depths(["default"]))["default"].backlog == 1
            assert (await plain.depths(["default"]))["default"].backlog == 0
            woken: list[str] = []
            b.watch(["default"], woken.append)
            for _ in range(500):  # until subscribed (it dispatches once on subscribing)
                if b.subscribed and woken:
                    break
                await asyncio.sleep(0.01)
            # Subscribed to its own prefix's wake channel, not to another team's.
            counts = dict(await team_b.redis.pubsub_numsub("team-a:{default}:wake",
                                                           "team-b:{default}:wake"))
            assert counts == {b"team-a:{default}:wake": 0, b"team-b:{default}:wake": 1}
            woken.clear()
            await team_b.redis.delete(*(await team_b.redis.keys("team-b:*")))
            await team_b.enqueue("noop")  # empty -> non-empty: b is woken
            for _ in range(500):
                if woken:
                    break
                await asyncio.sleep(0.01)
            assert woken == ["default"]
        finally:
            await servers.close()
