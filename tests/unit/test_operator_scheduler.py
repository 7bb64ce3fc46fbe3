"""The operator's one scheduler against a real Redis: the TaskQueues due at one tick,
and those woken together, share one round trip per server; a pass never overlaps
its TaskQueue's previous one; removing a TaskQueue waits for its running pass."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from corral_operator.redis_io import Server, Servers
from corral_operator.scheduler import Prefetched, Scheduler


class Fake:
    def __init__(self, uid: str, server: Server, grid_s: float = 300.0) -> None:
        self.uid, self.grid_s, self.server = uid, grid_s, server
        self.seen: list[Prefetched | None] = []
        self.running = 0
        self.overlapped = False
        self.hold = asyncio.Event()
        self.hold.set()

    def planned_read(self) -> tuple[Server, Sequence[str]] | None:
        return (self.server, [f"q-{self.uid}"]) if self.seen else None

    async def poll(self, prefetched: Prefetched | None) -> float:
        self.running += 1
        self.overlapped |= self.running > 1
        self.seen.append(prefetched)
        await self.hold.wait()
        self.running -= 1
        return self.grid_s


async def until(check: object, what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def test_taskqueues_woken_together_share_one_round_trip(redis_url: str) -> None:
    servers = Servers()
    server = servers.acquire(redis_url)
    scheduler = Scheduler()
    fakes = [Fake(f"tq{i}", server) for i in range(30)]
    try:
        for fake in fakes:
            scheduler.add(fake)
        await until(lambda: all(f.seen for f in fakes), "the first passes")
        before = server.round_trips
        for fake in fakes:
            scheduler.wake(fake.uid)
        await until(lambda: all(len(f.seen) == 2 for f in fakes), "a pass for each wake-up")
        assert server.round_trips == before + 1
        assert all(f.seen[1] is not None and f.seen[1].depths is not None for f in fakes)
    finally:
        for fake in fakes:
            await scheduler.remove(fake.uid)
        await scheduler.close()
        await servers.close()


async def test_taskqueues_due_together_share_one_round_trip(redis_url: str) -> None:
    servers = Servers()
    server = servers.acquire(redis_url)
    scheduler = Scheduler()
    fakes = [Fake(f"tq{i}", server, grid_s=0.5) for i in range(30)]
    try:
        for fake in fakes:
            scheduler.add(fake)
        await until(lambda: all(len(f.seen) >= 3 for f in fakes), "three ticks")
        # The first passes read on their own; from then on, one read per tick.
        ticks = min(len(f.seen) for f in fakes) - 1
        assert server.round_trips <= 1 + ticks + 1
    finally:
        for fake in fakes:
            await scheduler.remove(fake.uid)
        await scheduler.close()
        await servers.close()


async def test_a_pass_never_overlaps_and_removal_waits_for_it(redis_url: str) -> None:
    servers = Servers()
    server = servers.acquire(redis_url)
    scheduler = Scheduler()
    fake = Fake("tq", server)
    try:
        scheduler.add(fake)
        await until(lambda: fake.seen, "the first pass")
        fake.hold.clear()
        scheduler.wake(fake.uid)
        await until(lambda: len(fake.seen) == 2, "the woken pass")
        scheduler.wake(fake.uid)  # while it runs
        await asyncio.sleep(0.1)
        assert len(fake.seen) == 2 and not fake.overlapped
        removal = asyncio.create_task(scheduler.remove(fake.uid))
        await asyncio.sleep(0.1)
        assert not removal.done()  # its pass still runs
        fake.hold.set()
        await asyncio.wait_for(removal, 5)
        await asyncio.sleep(0.1)
        assert len(fake.seen) == 2  # removed: the wake-up that came meanwhile is dropped
    finally:
        fake.hold.set()
        await scheduler.close()
        await servers.close()
