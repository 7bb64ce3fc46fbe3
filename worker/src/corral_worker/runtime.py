"""The worker runtime: fetch, dispatch, run, acknowledge, keep leases, drain."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import time
import traceback
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from prometheus_client.registry import CollectorRegistry
from redis.asyncio import Redis
from redis.exceptions import ReadOnlyError, RedisError, ResponseError

from corral.app import App, TaskDef
from corral.channels import Channels
from corral.connection import connect, redact
from corral.keys import QueueKeys, queue_keys
from corral.scripts import Scripts
from corral.serialization import (
    PayloadError,
    decode_payload,
    encode_error,
    encode_result,
)
from corral_worker.broker import Broker, Job, Outcome, now_ms
from corral_worker.http import HttpServer
from corral_worker.metrics import WorkerCollector, WorkerMetrics
from corral_worker.policy import after_failure, is_poison
from corral_worker.resilience import RedisHealth, survive
from corral_worker.scheduler import LocalScheduler
from corral_worker.settings import WorkerSettings

log = logging.getLogger("corral_worker")

TIMEOUT_SWEEP_S = 0.1
# Outcomes per finish call: large enough to batch, small enough for one Lua unpack().
MAX_ACK_BATCH = 1000
LOOP_LAG_PROBE_S = 0.25
# Stop running a task when its lease may have passed to another worker: the last
# renewal is this share of a lease ago.
SELF_FENCE_SHARE = 0.9


class _Queue:
    """One queue's state inside the worker."""

    def __init__(self, name: str, weight: int) -> None:
        self.keys: QueueKeys = queue_keys(name)
        self.weight = weight
        self.held: dict[str, Job] = {}  # claimed and not yet acknowledged
        self.running = 0
        self.wake = asyncio.Event()  # Redis says work may be there
        self.low = asyncio.Event()  # the local buffer wants refilling
        self.acks: list[Outcome] = []
        self.ack_wanted = asyncio.Event()
        self.closing = False
        self.renewed_at = time.monotonic()  # when the last successful heartbeat was sent


class Worker:
    """Runs the tasks of ``app`` from the queues in ``settings`` until stopped."""

    def __init__(self, app: App, settings: WorkerSettings, redis: Redis | None = None) -> None:
        self.app = app
        self.settings = settings
        self._redis = redis
        self._queues = {name: _Queue(name, weight) for name, weight in settings.queues.items()}
        self._scheduler: LocalScheduler[Job] = LocalScheduler(settings.queues)
        self.metrics = WorkerMetrics(settings.queues)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(
            WorkerCollector(self.metrics, self._active_counts, self._prefetched_counts)
        )
        self._health = RedisHealth(self.metrics)
        self._running_jobs: dict[str, Job] = {}
        self._stopping = False
        self._stop_requested: asyncio.Event | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._background: list[asyncio.Task[None]] = []
        self._started_ms = now_ms()
        self.metrics_port: int | None = None
        self.started = asyncio.Event()  # set once claiming has begun
        self._lease_ms = int(settings.lease_s * 1000)

    # -- life cycle ------------------------------------------------------------------

    async def run(self, install_signal_handlers: bool = True) -> None:
        """Run until stop() or SIGTERM/SIGINT, then drain and return."""
        self._stop_requested = asyncio.Event()
        redis = self._redis or connect(self.settings.redis_url)
        holder = f"{self.settings.worker_id}/{os.getpid()}-{os.urandom(3).hex()}"
        self._broker = Broker(redis, Scripts.register(redis), holder,
                              dead_ttl_s=self.app.dead_ttl_s, max_dead=self.app.max_dead)
        self._executor = ThreadPoolExecutor(
            max_workers=self.settings.concurrency, thread_name_prefix="corral-task"
        )
        http = HttpServer(
            self.registry,
            lambda: self.metrics.event_loop_lag_s,
            self._readiness,
            self.settings.debug_endpoint,
        )
        if install_signal_handlers:
            self._install_signal_handlers()
        try:
            if self.settings.metrics_port is not None:
                self.metrics_port = await http.start(
                    self.settings.metrics_host, self.settings.metrics_port
                )
                log.info("worker http on http://%s:%d (/metrics /healthz /readyz)",
                         self.settings.metrics_host, self.metrics_port)
            self._start_background()
            self.started.set()
            log.info(
                "worker %s started: queues %s, concurrency %d, batch %d, redis %s",
                self.settings.worker_id,
                ",".join(f"{q}={w}" for q, w in self.settings.queues.items()),
                self.settings.concurrency,
                self.settings.batch_size,
                redact(self.settings.redis_url),
            )
            await self._stop_requested.wait()
            await self._drain()
        finally:
            await self._stop_background()
            await http.stop()
            self._executor.shutdown(wait=False, cancel_futures=True)
            if install_signal_handlers:
                self._remove_signal_handlers()
            if self._redis is None:
                await redis.aclose()
        log.info("worker %s stopped", self.settings.worker_id)

    def stop(self) -> None:
        """Begin a graceful shutdown (what SIGTERM does)."""
        if self._stop_requested is not None:
            self._stop_requested.set()

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)

    def _remove_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        if self._stopping:
            log.warning("second %s: exiting at once", sig.name)
            os._exit(1)
        log.info("%s: draining (grace %.1f s)", sig.name, self.settings.grace_s)
        self.stop()

    def _start_background(self) -> None:
        spawn = self._spawn
        for q in self._queues.values():
            spawn(functools.partial(self._fetch_loop, q), f"corral:fetch:{q.keys.queue}")
            spawn(functools.partial(self._ack_loop, q), f"corral:ack:{q.keys.queue}")
        spawn(self._heartbeat_loop, "corral:heartbeat")
        spawn(self._listen_loop, "corral:listen")
        spawn(self._sweep_loop, "corral:sweep")
        spawn(self._lag_loop, "corral:loop-lag")

    def _spawn(self, loop: Callable[[], Awaitable[None]], name: str) -> None:
        self._background.append(asyncio.create_task(survive(loop, name), name=name))

    async def _stop_background(self) -> None:
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._background.clear()

    async def _drain(self) -> None:
        """Stop claiming, hand back what has not started, let running tasks finish
        within the grace period, then cancel and requeue the rest."""
        self._stopping = True
        for q in self._queues.values():
            q.wake.set()
            q.low.set()
        for _, job in list(self._scheduler.drain()):
            self._acknowledge(job, Outcome(job, "q", number=1), "requeued", None)
        running = [job.task for job in self._running_jobs.values() if job.task is not None]
        if running:
            log.info("waiting up to %.1f s for %d running tasks",
                     self.settings.grace_s, len(running))
            await asyncio.wait(running, timeout=self.settings.grace_s)
        leftover = [job.task for job in self._running_jobs.values() if job.task is not None]
        for job in list(self._running_jobs.values()):
            self._cancel_job(job, "shutdown")
        if leftover:
            log.warning("grace period over: cancelled and requeued %d tasks", len(leftover))
            await asyncio.gather(*leftover, return_exceptions=True)
        await self._flush_acks()
        await self._deregister()

    async def _flush_acks(self) -> None:
        ack_tasks = [t for t in self._background if t.get_name().startswith("corral:ack:")]
        # A claim still in flight hands its tasks back through the acks: let it land first.
        fetch_tasks = [t for t in self._background if t.get_name().startswith("corral:fetch:")]
        await asyncio.gather(*fetch_tasks, return_exceptions=True)
        for q in self._queues.values():
            q.closing = True
            q.ack_wanted.set()
        # Acks wait for Redis as long as the pod's termination grace allows.
        await asyncio.gather(*ack_tasks, return_exceptions=True)

    async def _deregister(self) -> None:
        for q in self._queues.values():
            with contextlib.suppress(RedisError, OSError):
                await self._broker.deregister(q.keys, self.settings.worker_id)

    # -- fetching and dispatching ---------------------------------------------------------

    async def _fetch_loop(self, q: _Queue) -> None:
        batch = self.settings.batch_size
        while not self._stopping:
            room = batch - self._scheduler.count(q.keys.queue)
            if room * 2 < batch:
                q.low.clear()
                await q.low.wait()
                continue
            q.wake.clear()
            try:
                claimed = await self._broker.claim(q.keys, room, self._lease_ms)
            except (RedisError, OSError) as exc:
                await asyncio.sleep(self._health.failed(exc, "claim"))
                continue
            self._health.succeeded()
            self._accept(q, claimed.jobs)
            if len(claimed.jobs) < room and not self._stopping:
                await self._idle(q, claimed.next_due_ms, claimed.now_ms)

    async def _idle(self, q: _Queue, next_due_ms: int, redis_now_ms: int) -> None:
        """Wait for a wake message, the next scheduled task, or the idle poll."""
        timeout_s = self.settings.idle_poll_s
        if next_due_ms >= 0:
            timeout_s = min(timeout_s, max(0.0, (next_due_ms - redis_now_ms) / 1000))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await q.wake.wait()

    def _accept(self, q: _Queue, jobs: list[Job]) -> None:
        tasks = self.app.tasks
        for job in jobs:
            q.held[job.id] = job
            if self._stopping:
                self._acknowledge(job, Outcome(job, "q", number=1), "requeued", None)
                continue
            task_def = tasks.get(job.name)
            if task_def is None:
                self._dead_letter(job, "UnknownTask", f"no task named {job.name!r} is registered")
            elif is_poison(job.attempts, task_def.retries):
                self._dead_letter(
                    job, "LeaseExpired",
                    f"gave up after {job.attempts} attempts; leases kept running out",
                )
            else:
                self._scheduler.push(job.queue, job.priority, job)
        self._dispatch()

    def _dispatch(self) -> None:
        """Start buffered tasks while there are free slots."""
        scheduler, running_jobs, concurrency = self._scheduler, self._running_jobs, (
            self.settings.concurrency
        )
        half_batch = self.settings.batch_size / 2
        while len(running_jobs) < concurrency:
            picked = scheduler.pop()
            if picked is None:
                break
            queue, job = picked
            q = self._queues[queue]
            if scheduler.count(queue) <= half_batch:
                q.low.set()
            self._start(q, job)

    def _start(self, q: _Queue, job: Job) -> None:
        if time.monotonic() - q.renewed_at > self.settings.lease_s * SELF_FENCE_SHARE:
            # Leases not renewed for too long may have passed to another worker: a
            # prefetched task is handed back, not started (the sweep stops running ones).
            self._acknowledge(job, Outcome(job, "q", number=1), "requeued", None)
            return
        task_def = self.app.tasks[job.name]
        try:
            args, kwargs = decode_payload(job.payload, self.settings.max_payload_bytes)
        except PayloadError as exc:
            self._dead_letter(job, "PayloadError", str(exc))
            return
        started_at = time.monotonic()
        job.started_at = started_at
        if task_def.timeout_s is not None:
            job.deadline = started_at + task_def.timeout_s
        q.running += 1
        self._running_jobs[job.id] = job
        self.metrics.started(q.keys.queue, time.time() - job.ready_ms / 1000)
        job.task = asyncio.create_task(
            self._execute(q, job, task_def, args, kwargs), name=f"corral:task:{job.name}:{job.id}"
        )

    # -- running ---------------------------------------------------------------------------

    async def _execute(
        self, q: _Queue, job: Job, task_def: TaskDef, args: list[Any], kwargs: dict[str, Any]
    ) -> None:
        try:
            if task_def.is_async:
                result = await task_def.fn(*args, **kwargs)
            else:
                assert self._executor is not None
                result = await asyncio.get_running_loop().run_in_executor(
                    self._executor, functools.partial(task_def.fn, *args, **kwargs)
                )
            data = encode_result(result)
        except asyncio.CancelledError:
            reason = job.cancel_reason
            if reason is None:
                raise
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
            self._on_cancelled(job, task_def, reason)
        except BaseException as exc:  # a task that raises anything is recorded; the worker goes on
            self._on_error(job, task_def, type(exc).__name__, str(exc), traceback.format_exc())
        else:
            self._acknowledge(
                job, Outcome(job, "s", data, int(task_def.result_ttl_s * 1000)), "succeeded",
                task_def,
            )
        finally:
            q.running -= 1
            self._running_jobs.pop(job.id, None)
            if not self._stopping:
                self._dispatch()

    def _on_cancelled(self, job: Job, task_def: TaskDef, reason: str) -> None:
        if reason == "timeout":
            self._on_error(
                job, task_def, "TimeoutError",
                f"task exceeded its timeout of {task_def.timeout_s} s", "",
                timed_out=True,
            )
        elif reason == "cancel":
            error = encode_error("CancelledError", "cancelled on request")
            ttl_ms = int(task_def.result_ttl_s * 1000)
            self._acknowledge(job, Outcome(job, "c", error, ttl_ms), "cancelled", task_def)
        else:  # shutdown, or the lease may have passed to another worker
            self._acknowledge(job, Outcome(job, "q", number=0), "requeued", task_def)

    def _on_error(
        self,
        job: Job,
        task_def: TaskDef,
        type_name: str,
        message: str,
        tb: str,
        timed_out: bool = False,
    ) -> None:
        error = encode_error(type_name, message, tb)
        decision = after_failure(
            job.attempts,
            task_def.retries,
            task_def.dead_letter,
            task_def.retry_backoff_s,
            task_def.retry_backoff_max_s,
        )
        if decision.outcome == "retry":
            outcome = Outcome(job, "r", error, int(decision.delay_s * 1000))
            label = "retried"
        elif decision.outcome == "dead":
            outcome = Outcome(job, "d", error, int(task_def.dead_ttl_s * 1000))
            label = "dead"
        else:
            outcome = Outcome(job, "f", error, int(task_def.result_ttl_s * 1000))
            label = "failed"
        log.log(logging.INFO if label == "retried" else logging.WARNING,
                "task %s attempt %d failed: %s: %s -> %s", job.name, job.attempts, type_name,
                message, label, extra={"task_id": job.id})
        if timed_out:
            self.metrics.finished(job.queue, job.name, "timed_out", None)
        self._acknowledge(job, outcome, label, task_def)

    def _dead_letter(self, job: Job, type_name: str, message: str) -> None:
        log.warning("task %s dead-lettered: %s: %s", job.id, type_name, message,
                    extra={"task_id": job.id})
        dead_ttl_ms = int(self.app.dead_ttl_s * 1000)
        self._acknowledge(job, Outcome(job, "d", encode_error(type_name, message), dead_ttl_ms),
                          "dead", None)

    def _acknowledge(
        self, job: Job, outcome: Outcome, label: str, task_def: TaskDef | None
    ) -> None:
        duration_s = time.monotonic() - job.started_at if job.started_at else None
        self.metrics.finished(job.queue, job.name if task_def else "-", label, duration_s)
        q = self._queues[job.queue]
        q.acks.append(outcome)
        q.ack_wanted.set()

    async def _ack_loop(self, q: _Queue) -> None:
        """Send finished outcomes in batches: whatever piled up while the last call ran."""
        while True:
            if not q.acks:
                # Checked before every wait: a wake-up for closing may have been consumed
                # while the last batch was being sent.
                if q.closing:
                    return
                await q.ack_wanted.wait()
                q.ack_wanted.clear()
                continue
            batch, q.acks = q.acks[:MAX_ACK_BATCH], q.acks[MAX_ACK_BATCH:]
            stale = await self._finish(q, batch)
            for outcome in batch:
                q.held.pop(outcome.job.id, None)
            if stale:
                self.metrics.lease_takeovers += len(stale)
                log.warning("%d finished tasks had been taken over by another worker "
                            "(possible duplicate runs): %s", len(stale), " ".join(stale[:10]))
            if q.acks:
                q.ack_wanted.set()

    async def _finish(self, q: _Queue, batch: list[Outcome]) -> list[str]:
        """Record a batch, retrying while Redis is away. An error Redis answers with (a
        record damaged from outside, say) cannot be retried away: the batch is sent again
        one by one, and an outcome that still fails is dropped; its lease runs out and the
        task runs again."""
        while True:
            try:
                stale = await self._broker.finish(q.keys, batch)
                self._health.succeeded()
                return stale
            except ReadOnlyError as exc:  # a replica promoted a moment ago: transient
                await asyncio.sleep(self._health.failed(exc, "finish"))
            except ResponseError as exc:
                if len(batch) == 1:
                    log.error("cannot record the outcome of task %s: %s", batch[0].job.id, exc,
                              extra={"task_id": batch[0].job.id})
                    return []
                return [i for outcome in batch for i in await self._finish(q, [outcome])]
            except (RedisError, OSError) as exc:
                await asyncio.sleep(self._health.failed(exc, "finish"))

    # -- cancellation, timeouts, leases -------------------------------------------------

    def _cancel_job(self, job: Job, reason: str) -> None:
        if job.task is not None and not job.task.done() and job.cancel_reason is None:
            job.cancel_reason = reason
            job.task.cancel()

    def _cancel_by_id(self, queue: str, task_id: str) -> None:
        """A cancel request: cancel it if running here, or drop it if only buffered."""
        job = self._running_jobs.get(task_id)
        if job is not None and job.queue == queue:
            self._cancel_job(job, "cancel")
            return
        for removed in self._scheduler.remove(queue, lambda j: j.id == task_id):
            # Only registered tasks reach the buffer, so the task's own result TTL applies.
            task_def = self.app.tasks[removed.name]
            error = encode_error("CancelledError", "cancelled before it started")
            ttl_ms = int(task_def.result_ttl_s * 1000)
            self._acknowledge(removed, Outcome(removed, "c", error, ttl_ms), "cancelled",
                              task_def)

    async def _sweep_loop(self) -> None:
        """Cancel tasks past their timeout, and stop tasks whose lease may be lost."""
        fence_s = self.settings.lease_s * SELF_FENCE_SHARE
        while True:
            await asyncio.sleep(TIMEOUT_SWEEP_S)
            now = time.monotonic()
            for job in list(self._running_jobs.values()):
                if job.deadline and now > job.deadline:
                    self._cancel_job(job, "timeout")
                elif now - self._queues[job.queue].renewed_at > fence_s:
                    self._cancel_job(job, "lease_lost")

    async def _heartbeat_loop(self) -> None:
        settings = self.settings
        while True:
            for q in self._queues.values():
                await self._heartbeat(q)
            await asyncio.sleep(settings.heartbeat_s)

    async def _heartbeat(self, q: _Queue) -> None:
        settings = self.settings
        sent_at = time.monotonic()
        registry: dict[str, str | int] = {
            "queues": ",".join(settings.queues),
            "concurrency": settings.concurrency,
            "in_flight": len(q.held),
            "running": q.running,
            "started_ms": self._started_ms,
            "heartbeat_ms": now_ms(),
            "pid": os.getpid(),
        }
        try:
            upkeep = await self._broker.heartbeat(
                q.keys,
                settings.worker_id,
                list(q.held.values()),
                registry,
                self._lease_ms,
                int(settings.registry_ttl_s * 1000),
                int(self.app.result_ttl_s * 1000),
            )
        except (RedisError, OSError) as exc:
            self._health.failed(exc, "heartbeat")
            return
        self._health.succeeded()
        q.renewed_at = sent_at
        self.metrics.backlog[q.keys.queue] = upkeep.backlog
        if upkeep.requeued:
            log.info("requeued %d tasks of %s whose lease ran out", upkeep.requeued,
                     q.keys.queue)
        for task_id in upkeep.cancelled:
            self._cancel_by_id(q.keys.queue, task_id)
        for task_id in upkeep.lost:
            job = self._running_jobs.get(task_id)
            if job is not None:
                self._cancel_job(job, "lease_lost")
        if upkeep.backlog and not self._stopping:
            q.wake.set()

    async def _listen_loop(self) -> None:
        """Wake fetchers on ``wake`` messages; cancel tasks on ``cancel`` messages."""
        channels = {}
        for q in self._queues.values():
            channels[q.keys.wake_channel] = q
            channels[q.keys.cancel_channel] = q
        while True:
            pubsub = Channels(self._broker.redis)
            try:
                await pubsub.subscribe(*channels)
                for q in self._queues.values():
                    q.wake.set()  # anything published while unsubscribed is looked for now
                while True:
                    channel, data = await pubsub.get()
                    q = channels[channel]
                    if channel == q.keys.wake_channel:
                        q.wake.set()
                    else:
                        self._cancel_by_id(q.keys.queue, data.decode())
            except (RedisError, OSError) as exc:
                await asyncio.sleep(self._health.failed(exc, "subscribe"))
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    async def _lag_loop(self) -> None:
        while True:
            started = time.monotonic()
            await asyncio.sleep(LOOP_LAG_PROBE_S)
            self.metrics.event_loop_lag_s = max(
                0.0, time.monotonic() - started - LOOP_LAG_PROBE_S
            )

    # -- views --------------------------------------------------------------------------

    def _active_counts(self) -> dict[str, int]:
        return {name: q.running for name, q in self._queues.items()}

    def _prefetched_counts(self) -> dict[str, int]:
        return {name: self._scheduler.count(name) for name in self._queues}

    def _readiness(self) -> tuple[bool, str]:
        if self._stopping:
            return False, "draining"
        if not self._health.reachable:
            return False, "redis unreachable"
        return True, "claiming"


def run_worker(app: App, settings: WorkerSettings, loop_factory: Callable[[], Any] | None = None
               ) -> None:
    """Run a worker in a new event loop, using uvloop when it is installed."""
    if loop_factory is None:
        try:
            import uvloop

            loop_factory = uvloop.new_event_loop
        except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
            loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(Worker(app, settings).run())
