"""The chaos run: many tasks, several ``corral worker`` processes, a random worker
killed every few seconds and started again, and one Redis restart; then a count of
the tasks that were lost and of those that ran more than once.

Used by the short form in the test suite and by ``bench/chaos.py`` (the long form).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import redis.asyncio
from redis.exceptions import RedisError

from corral.client import Client, Enqueue
from corral.depths import read_queue_depths
from corral.embedded import EmbeddedRedis
from corral.keys import DEFAULT_PREFIX, queue_keys
from tests.chaos.app import DONE_KEY, STARTS_KEY
from tests.support.workers import WorkerProcess

QUEUE = "default"
APP = "tests.chaos.app:app"
KillSignal = Literal["SIGKILL", "SIGTERM"]


@dataclass(frozen=True, slots=True)
class ChaosConfig:
    tasks: int = 10_000
    workers: int = 4
    kill_signal: KillSignal = "SIGKILL"
    kill_every_s: float = 2.0
    task_sleep_s: float = 0.05
    concurrency: int = 16
    batch_size: int = 16
    lease_s: float = 3.0
    grace_s: float = 10.0
    restart_redis: bool = True
    timeout_s: float = 300.0
    seed: int = 1


@dataclass(slots=True)
class Kill:
    number: int
    worker_id: str
    at_s: float  # since the workers started
    signal: str
    in_flight: list[str]  # ids the worker had claimed and not acknowledged when it was stopped
    recovery_s: float | None = None  # until every one of them had succeeded elsewhere


@dataclass(slots=True)
class RedisRestart:
    at_s: float
    down_s: float  # from the stop until the server answered again
    in_flight: list[str]  # ids claimed and not acknowledged when Redis stopped
    resumed_s: float | None = None  # from the stop until the next task finished


@dataclass(slots=True)
class ChaosReport:
    config: ChaosConfig
    total_s: float = 0.0
    lost: list[str] = field(default_factory=list)  # ids that never succeeded
    lost_states: dict[str, str] = field(default_factory=dict)
    extra_runs: dict[str, int] = field(default_factory=dict)  # id -> executions beyond the first
    kills: list[Kill] = field(default_factory=list)
    redis_restart: RedisRestart | None = None
    runs_by_pid: dict[str, list[int]] = field(default_factory=dict)  # duplicated id -> pids
    worker_pids: dict[int, str] = field(default_factory=dict)  # pid -> worker id
    hung_workers: int = 0  # workers that did not exit after SIGTERM

    @property
    def duplicated(self) -> int:
        return sum(self.extra_runs.values())

    @property
    def in_flight_at_kills(self) -> int:
        return sum(len(kill.in_flight) for kill in self.kills)

    @property
    def in_flight_at_faults(self) -> int:
        """In flight at the kills, and at the Redis restart."""
        restart = self.redis_restart
        return self.in_flight_at_kills + (len(restart.in_flight) if restart else 0)

    @property
    def unexplained_duplicates(self) -> list[str]:
        """Ids that ran twice although they were not in flight at any fault."""
        held = {task_id for kill in self.kills for task_id in kill.in_flight}
        if self.redis_restart is not None:
            held.update(self.redis_restart.in_flight)
        return sorted(set(self.extra_runs) - held)

    def summary(self) -> str:
        c = self.config
        lines = [
            f"chaos: {c.tasks} tasks, {c.workers} workers, {c.kill_signal} every ~"
            f"{c.kill_every_s:g} s, lease {c.lease_s:g} s, task sleep {c.task_sleep_s:g} s",
        ]
        for kill in self.kills:
            recovery = f"{kill.recovery_s:.2f} s" if kill.recovery_s is not None else "n/a"
            lines.append(
                f"  kill {kill.number:>2} at {kill.at_s:6.1f} s: {kill.signal} {kill.worker_id}, "
                f"in flight {len(kill.in_flight):>3}, recovered in {recovery}"
            )
        if self.redis_restart is not None:
            r = self.redis_restart
            resumed = f"{r.resumed_s:.2f} s" if r.resumed_s is not None else "n/a"
            lines.append(f"  redis restart at {r.at_s:6.1f} s: in flight {len(r.in_flight)}, "
                         f"down {r.down_s:.2f} s, tasks finishing again after {resumed}")
        recoveries = [k.recovery_s for k in self.kills if k.recovery_s is not None]
        worst = f"{max(recoveries):.2f} s" if recoveries else "n/a"
        lines.append(
            f"lost={len(self.lost)} duplicated={self.duplicated} "
            f"(in flight at kills={self.in_flight_at_kills}, at faults="
            f"{self.in_flight_at_faults}, unexplained="
            f"{len(self.unexplained_duplicates)}) total={self.total_s:.1f} s "
            f"rate={c.tasks / self.total_s if self.total_s else 0:.0f} tasks/s "
            f"worst recovery={worst}"
        )
        return "\n".join(lines)


class ChaosRun:
    def __init__(
        self, server: EmbeddedRedis, config: ChaosConfig, log: Callable[[str], None] = print
    ) -> None:
        self.server = server
        self.config = config
        self.log = log
        self.report = ChaosReport(config)
        self.redis = redis.asyncio.Redis.from_url(server.url)
        self.keys = queue_keys(QUEUE, DEFAULT_PREFIX)
        self.rng = random.Random(config.seed)
        self.slots: list[WorkerProcess | None] = [None] * config.workers
        self.generation = 0
        self.ids: list[str] = []
        self.started_at = 0.0
        self.finished = asyncio.Event()
        self._recoveries: list[asyncio.Task[None]] = []
        self.all_workers: list[WorkerProcess] = []
        self._stopping: list[asyncio.Task[None]] = []

    async def run(self) -> ChaosReport:
        try:
            await self.redis.flushall()
            await self._enqueue()
            await asyncio.gather(*(self._start_worker(i) for i in range(self.config.workers)))
            self.started_at = time.monotonic()
            chaos = asyncio.create_task(self._chaos_loop(), name="chaos:loop")
            try:
                await self._wait_until_done()
            finally:
                self.finished.set()
                await chaos
                await asyncio.gather(*self._recoveries, *self._stopping)
            self.report.total_s = time.monotonic() - self.started_at
            await self._count()
        finally:
            await self._stop_workers()
            await self.redis.aclose()
        return self.report

    # -- set-up and tear-down ---------------------------------------------------------

    async def _enqueue(self) -> None:
        sleep_s = self.config.task_sleep_s
        async with Client(redis.asyncio.Redis.from_url(self.server.url)) as client:
            for start in range(0, self.config.tasks, 2_000):
                calls = [
                    Enqueue("chaos_run", kwargs={"task_key": str(i), "sleep_s": sleep_s})
                    for i in range(start, min(start + 2_000, self.config.tasks))
                ]
                self.ids += [handle.id for handle in await client.enqueue_many(calls)]

    async def _start_worker(self, slot: int) -> None:
        c = self.config
        self.generation += 1
        worker = WorkerProcess(
            self.server.url,
            app=APP,
            worker_id=f"chaos-{slot}-{self.generation}",
            args=[
                "--concurrency", str(c.concurrency), "--batch-size", str(c.batch_size),
                "--lease-seconds", str(c.lease_s), "--grace-seconds", str(c.grace_s),
            ],
        )
        try:
            await asyncio.to_thread(worker.wait_started)
        except BaseException:
            worker.close()
            raise
        self.slots[slot] = worker
        self.all_workers.append(worker)
        self.report.worker_pids[worker.process.pid] = worker.command[
            worker.command.index("--worker-id") + 1]

    async def _stop_workers(self) -> None:
        workers = [w for w in self.slots if w is not None]
        for worker in workers:
            with contextlib.suppress(ProcessLookupError):
                worker.process.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                await asyncio.to_thread(worker.wait, self.config.grace_s + 20)
            except Exception:
                worker.close()

    # -- faults ---------------------------------------------------------------------------

    async def _chaos_loop(self) -> None:
        c = self.config
        restarted = not c.restart_redis
        while not self.finished.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(c.kill_every_s * self.rng.uniform(0.75, 1.25)):
                    await self.finished.wait()
            if self.finished.is_set():
                return
            if not restarted and await self._done_count() >= c.tasks // 2:
                restarted = True
                await self._restart_redis()
                continue
            slot = self.rng.randrange(c.workers)
            worker = self.slots[slot]
            if worker is None:
                continue
            self.slots[slot] = None
            await self._kill(worker)
            await self._start_worker(slot)

    async def _kill(self, worker: WorkerProcess) -> None:
        at_s = time.monotonic() - self.started_at
        pid = worker.process.pid
        worker_id = worker.command[worker.command.index("--worker-id") + 1]
        # Frozen, the worker's claims can be read exactly as they are at the kill.
        os.kill(pid, signal.SIGSTOP)
        try:
            in_flight = await self._claimed_by(f"{worker_id}/{pid}-")
        finally:
            if self.config.kill_signal == "SIGKILL":
                worker.kill()
            else:
                os.kill(pid, signal.SIGTERM)
                os.kill(pid, signal.SIGCONT)
        kill = Kill(len(self.report.kills) + 1, worker_id, at_s, self.config.kill_signal,
                    in_flight)
        self.report.kills.append(kill)
        self.log(f"kill {kill.number} at {at_s:.1f} s: {kill.signal} {worker_id} holding "
                 f"{len(in_flight)} tasks")
        self._recoveries.append(asyncio.create_task(self._recovery(kill)))
        if self.config.kill_signal == "SIGTERM":
            self._stopping.append(asyncio.create_task(self._reap(worker)))

    async def _reap(self, worker: WorkerProcess) -> None:
        try:
            code = await asyncio.to_thread(worker.wait, self.config.grace_s + 30)
        except subprocess.TimeoutExpired:
            self.log(f"worker did not stop after SIGTERM:\n{worker.output()}")
            self.report.hung_workers += 1
            worker.close()
            return
        if code != 0:
            self.log(f"worker exited with {code} after SIGTERM:\n{worker.output()}")

    async def _claimed_by(self, token_prefix: str) -> list[str]:
        ids = [i.decode() for i in await self.redis.zrange(self.keys.leased, 0, -1)]
        async with self.redis.pipeline(transaction=False) as pipe:
            for task_id in ids:
                pipe.hget(self.keys.task(task_id), "token")
            tokens = await pipe.execute()
        return [
            task_id for task_id, token in zip(ids, tokens, strict=True)
            if token and token.decode().startswith(token_prefix)
        ]

    async def _recovery(self, kill: Kill) -> None:
        pending = set(kill.in_flight)
        killed_at = self.started_at + kill.at_s
        while pending:
            with contextlib.suppress(RedisError, OSError):
                pending = {i for i in pending if await self._state(i) != "succeeded"}
            if pending:
                if time.monotonic() - killed_at > self.config.timeout_s:
                    return
                await asyncio.sleep(0.05)
        kill.recovery_s = time.monotonic() - killed_at

    async def _restart_redis(self) -> None:
        before = await self._done_count()
        in_flight = [i.decode() for i in await self.redis.zrange(self.keys.leased, 0, -1)]
        at = time.monotonic()
        self.log(f"redis restart at {at - self.started_at:.1f} s, {len(in_flight)} in flight")
        await asyncio.to_thread(self.server.restart)
        restart = RedisRestart(at - self.started_at, time.monotonic() - at, in_flight)
        self.report.redis_restart = restart
        while not self.finished.is_set():
            with contextlib.suppress(RedisError, OSError):
                if await self._done_count() > before:
                    restart.resumed_s = time.monotonic() - at
                    return
            await asyncio.sleep(0.02)

    # -- progress and the final count ----------------------------------------------------------

    async def _state(self, task_id: str) -> str:
        state = await self.redis.hget(self.keys.task(task_id), "state")
        return state.decode() if state else "missing"

    async def _done_count(self) -> int:
        return int(await self.redis.hlen(DONE_KEY))

    async def _wait_until_done(self) -> None:
        deadline = self.started_at + self.config.timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(RedisError, OSError):
                if await self._done_count() >= self.config.tasks:
                    depth = (await read_queue_depths(self.redis, [QUEUE]))[QUEUE]
                    if depth.backlog == 0 and depth.in_flight == 0 and depth.scheduled == 0:
                        return
            await asyncio.sleep(0.1)
        self.log("chaos run timed out")

    async def _count(self) -> None:
        key_of = {task_id: str(i) for i, task_id in enumerate(self.ids)}
        for start in range(0, len(self.ids), 5_000):
            chunk = self.ids[start : start + 5_000]
            async with self.redis.pipeline(transaction=False) as pipe:
                for task_id in chunk:
                    pipe.hget(self.keys.task(task_id), "state")
                states = await pipe.execute()
            for task_id, state in zip(chunk, states, strict=True):
                if state != b"succeeded":
                    self.report.lost.append(task_id)
                    self.report.lost_states[task_id] = state.decode() if state else "missing"
        executions: dict[str, dict[str, int]] = {}  # task key -> execution id -> pid
        for entry in await self.redis.lrange(STARTS_KEY, 0, -1):
            key, pid, execution = entry.decode().split()
            executions.setdefault(key, {})[execution] = int(pid)
        for task_id in self.ids:
            runs = executions.get(key_of[task_id], {})
            if len(runs) > 1:
                self.report.extra_runs[task_id] = len(runs) - 1
                self.report.runs_by_pid[task_id] = list(runs.values())


async def run_chaos(
    server: EmbeddedRedis, config: ChaosConfig, log: Callable[[str], None] = print
) -> ChaosReport:
    return await ChaosRun(server, config, log).run()
