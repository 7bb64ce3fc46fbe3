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
from typing import Any

from prometheus_client.registry import CollectorRegistry
from redis.asyncio import Redis
from redis.exceptions import ReadOnlyError, RedisError, ResponseError

from corral import tracing
from corral.app import App, TaskDef, resolve_prefix
from corral.connection import connect, redact
from corral.context import TaskContext, entering, leaving
from corral.keys import QueueKeys, queue_keys
from corral.scripts import Scripts
from corral.serialization import (
    Call,
    PayloadError,
    decode_call,
    encode_error,
    encode_result,
)
from corral_worker.acks import AckBuffer, lost_leases
from corral_worker.broker import Ack, Broker, Job, Lease, Outcome, Upkeep, now_ms
from corral_worker.http import HttpServer
from corral_worker.listen import listen
from corral_worker.metrics import WorkerCollector, WorkerMetrics
from corral_worker.outcome import Finish, Stop, TaskError, Verdict, decide
from corral_worker.policy import is_poison
from corral_worker.progress import ProgressWriter
from corral_worker.resilience import LoopWatch, RedisHealth, survive
from corral_worker.scheduler import LocalScheduler
from corral_worker.settings import WorkerSettings
from corral_worker.taskcall import RunInThread, bare, call_wrapped
from corral_worker.threads import ThreadRunner
from corral_worker.ticker import REGISTER_EVERY_S, Ticker

log = logging.getLogger("corral_worker")

TIMEOUT_SWEEP_S = 0.1
# Outcomes per finish call: large enough to batch, small enough for one Lua unpack().
MAX_ACK_BATCH = 1000
LOOP_LAG_PROBE_S = 0.25
# Stop running a task when its lease may have passed to another worker: the last
# renewal is this share of a lease ago.
SELF_FENCE_SHARE = 0.9
# After the grace period, how long cancelled tasks get to end before the worker gives
# up on them (they swallow CancelledError), requeues them and exits.
CANCEL_DEADLINE_S = 5.0


class _Queue:
    """One queue's state inside the worker."""

    def __init__(self, name: str, weight: int, prefix: str) -> None:
        self.keys: QueueKeys = queue_keys(name, prefix)
        self.weight = weight
        self.acks = AckBuffer()
        self.running = 0
        self.wake = asyncio.Event()  # Redis says work may be there
        self.low = asyncio.Event()  # the local buffer wants refilling
        self.renewed_at = time.monotonic()  # when the last successful heartbeat was sent


class Worker:
    """Runs the tasks of ``app`` from the queues in ``settings`` until stopped."""

    def __init__(self, app: App, settings: WorkerSettings, redis: Redis | None = None) -> None:
        self.app = app
        self.settings = settings
        self.prefix = resolve_prefix(settings.prefix, app)  # ConfigError on a mismatch
        self._redis = redis
        self._queues = {name: _Queue(name, weight, self.prefix)
                        for name, weight in settings.queues.items()}
        self._scheduler: LocalScheduler[Job] = LocalScheduler(settings.queues)
        self.metrics = WorkerMetrics(settings.queues)
        self.registry = CollectorRegistry(auto_describe=False)
        self._threads = ThreadRunner(settings.concurrency)
        self.registry.register(
            WorkerCollector(self.metrics, self._active_counts, self._prefetched_counts,
                            lambda: self._threads.stuck)
        )
        self._health = RedisHealth(self.metrics)
        self._watch = LoopWatch()
        self._lag_peak_s = 0.0  # the worst loop lag since the last heartbeat
        self._running_jobs: dict[Lease, Job] = {}
        self._stopping = False
        self._stop_requested: asyncio.Event | None = None
        self.abandoned = 0  # tasks left running at exit: they ignored their cancellation
        self._background: list[asyncio.Task[None]] = []
        self._started_ms = now_ms()
        self.metrics_port: int | None = None
        self.started = asyncio.Event()  # set once claiming has begun
        self._leaving = asyncio.Event()  # set once no more heartbeats may be sent
        self._lease_ms = int(settings.lease_s * 1000)

    # -- life cycle ------------------------------------------------------------------

    async def run(self, install_signal_handlers: bool = True) -> None:
        """Run until stop() or SIGTERM/SIGINT, then drain and return."""
        self._stop_requested = asyncio.Event()
        redis = self._redis or connect(self.settings.redis_url)
        holder = f"{self.settings.worker_id}/{os.getpid()}-{os.urandom(3).hex()}"
        scripts = Scripts.register(redis)
        self._broker = Broker(redis, scripts, holder, self.settings.redis_timeout_s,
                              dead_ttl_s=self.app.dead_ttl_s, max_dead=self.app.max_dead)
        self._progress = ProgressWriter(scripts, self.settings.redis_timeout_s,
                                        self.prefix)
        http = HttpServer(
            self.registry,
            lambda: self.metrics.event_loop_lag_s,
            self._readiness,
            self.settings.debug_endpoint,
            lambda: {j.task: j.started_at for j in self._running_jobs.values() if j.task},
        )
        if install_signal_handlers:
            self._install_signal_handlers()
        try:
            if self.settings.metrics_port is not None:
                self.metrics_port = await http.start(
                    self.settings.metrics_host, self.settings.metrics_port
                )
                log.info("worker http on http://%s:%d (%s)", self.settings.metrics_host,
                         self.metrics_port, " ".join(http.paths))
            for hook in self.app.on_startup:
                await hook()
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
            await self._progress.close()
            await self._shut_down_hooks()
        finally:
            await self._stop_background()
            await http.stop()
            self._threads.shutdown()
            if install_signal_handlers:
                self._remove_signal_handlers()
            if self._redis is None:
                await redis.aclose()
        log.info("worker %s stopped", self.settings.worker_id)

    async def _shut_down_hooks(self) -> None:
        for hook in self.app.on_shutdown:
            try:
                await hook()
            except Exception:  # the others still run: each frees its own resources
                log.exception("shutdown hook %r failed", hook)

    @property
    def left_running(self) -> int:
        """Tasks and threads still running after run() returned."""
        return self.abandoned + self._threads.stuck

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
        if self.app.schedules:
            spawn(self._periodic_loop, "corral:periodic")
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
            self._hand_back(job)
        await self._wait_running(self.settings.grace_s)
        leftover = self._running_tasks()
        for job in list(self._running_jobs.values()):
            self._cancel_job(job, Stop.SHUTDOWN)
        if leftover:
            log.warning("grace period over: cancelled and requeued %d tasks", len(leftover))
            await asyncio.wait(leftover, timeout=CANCEL_DEADLINE_S)
            self._abandon(list(self._running_jobs.values()))
        await self._flush_acks()
        await self._stop_heartbeat()
        await self._deregister()

    def _abandon(self, jobs: list[Job]) -> None:
        """Requeue tasks that would not end when cancelled; the worker exits without them."""
        if not jobs:
            return
        log.error("%d tasks still running after %.0f s of cancellation (they swallow "
                  "CancelledError); requeued, and left behind: %s", len(jobs),
                  CANCEL_DEADLINE_S, " ".join(job.id for job in jobs[:10]))
        for job in jobs:
            self._running_jobs.pop(job.lease, None)
            self._settle(job, self.app.tasks[job.name], Verdict(Finish.REQUEUE), b"")
        self.abandoned += len(jobs)

    def _running_tasks(self) -> list[asyncio.Task[None]]:
        return [job.task for job in self._running_jobs.values() if job.task is not None]

    async def _wait_running(self, grace_s: float) -> None:
        running = self._running_tasks()
        if running:
            log.info("waiting up to %.1f s for %d running tasks", grace_s, len(running))
            await asyncio.wait(running, timeout=grace_s)

    async def _flush_acks(self) -> None:
        ack_tasks = [t for t in self._background if t.get_name().startswith("corral:ack:")]
        # A claim still in flight hands its tasks back through the acks: let it land first.
        fetch_tasks = [t for t in self._background if t.get_name().startswith("corral:fetch:")]
        await asyncio.gather(*fetch_tasks, return_exceptions=True)
        for q in self._queues.values():
            q.acks.close()
        # Acks wait for Redis as long as the pod's termination grace allows.
        await asyncio.gather(*ack_tasks, return_exceptions=True)

    async def _stop_heartbeat(self) -> None:
        """Let the heartbeat end its pass and stop: one after the deregistration would
        put the worker back in the registry until its entry expired."""
        self._leaving.set()
        heartbeat = [t for t in self._background if t.get_name() == "corral:heartbeat"]
        await asyncio.gather(*heartbeat, return_exceptions=True)

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
                with self._watch.pass_of(f"claim:{q.keys.queue}", self._pass_deadline_s):
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
        for job in jobs:
            previous = q.acks.hold(job)
            if previous is not None:  # claimed again: the old lease has passed on
                self._lose(previous)
            if self._stopping:
                self._hand_back(job)
                continue
            refusal = self._refusal(job)
            if refusal is None:
                self._scheduler.push(job.queue, job.priority, job)
            else:
                self._dead_letter(job, *refusal)
        self._dispatch()

    def _refusal(self, job: Job) -> tuple[str, str] | None:
        """Why a claimed task must not run (error type and message), or None."""
        task_def = self.app.tasks.get(job.name)
        if task_def is None:
            return "UnknownTask", f"no task named {job.name!r} is registered"
        if is_poison(job.attempts, task_def.retries):
            return "LeaseExpired", (
                f"gave up after {job.attempts} attempts; leases kept running out"
            )
        return None

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
            self._hand_back(job)
            return
        task_def = self.app.tasks[job.name]
        try:
            call = decode_call(job.payload, self.settings.max_payload_bytes)
        except PayloadError as exc:
            self._dead_letter(job, "PayloadError", str(exc))
            return
        if task_def.is_async:  # a plain function's clock starts when it gets a thread
            job.started_at = started_at = time.monotonic()
            if task_def.timeout_s is not None:
                job.deadline = started_at + task_def.timeout_s
        q.running += 1
        self._running_jobs[job.lease] = job
        self.metrics.started(q.keys.queue, time.time() - job.ready_ms / 1000)
        job.task = asyncio.create_task(
            self._execute(q, job, task_def, call), name=f"corral:task:{job.name}:{job.id}"
        )
        q.acks.started(job)

    # -- running ---------------------------------------------------------------------------

    async def _execute(self, q: _Queue, job: Job, task_def: TaskDef, call: Call) -> None:
        data = b""
        raised: TaskError | None = None
        try:
            data = encode_result(await self._call(job, task_def, call))
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if job.cancel_reason is None and current is not None and current.cancelling():
                raise  # cancelled from outside the worker: the event loop is closing
            if current is not None and job.cancel_reason is not None:
                current.uncancel()
            # Raised by the task itself (it awaited something cancelled) unless the worker
            # cancelled it: decide() weighs it by the worker's reason, if there is one.
            raised = TaskError("CancelledError", "", traceback.format_exc())  # str() is ""
        except BaseException as exc:  # a task that raises anything is recorded; the worker goes on
            raised = TaskError(type(exc).__name__, str(exc), traceback.format_exc())
        finally:
            q.running -= 1
            self._running_jobs.pop(job.lease, None)
        verdict = decide(task_def, job.attempts, raised, job.cancel_reason)
        self._settle(job, task_def, verdict, data)
        if not self._stopping:
            self._dispatch()

    async def _call(self, job: Job, task_def: TaskDef, call: Call) -> Any:
        context = TaskContext(job, self._progress.report)
        token = entering(context)  # in this attempt's own asyncio context
        try:
            if self.app.middleware or tracing.active():
                return await call_wrapped(self.app, task_def, context, call,
                                          self._in_thread(job, task_def))
            if task_def.is_async:  # the hot path: nothing around it
                return await task_def.fn(*call.args, **call.kwargs)
            return await bare(task_def, call, self._in_thread(job, task_def))
        finally:
            # Else the asyncio task's context keeps the TaskContext, which refers back to
            # the job that holds the task: a cycle per attempt for the GC to find.
            leaving(token)

    def _in_thread(self, job: Job, task_def: TaskDef) -> RunInThread:
        # A plain function's clock starts when a thread is free, not while it waits.
        started = functools.partial(_clock_starts, job, task_def.timeout_s)
        return functools.partial(self._threads.run, on_start=started)

    def _settle(self, job: Job, task_def: TaskDef, verdict: Verdict, data: bytes) -> None:
        """Record the verdict on an attempt that ran (once: a task abandoned at shutdown
        is requeued, and what it does later is not recorded)."""
        if job.settled:
            return
        job.settled = True
        finish, error = verdict.finish, verdict.error
        if error is not None:
            data = encode_error(error.type_name, error.message, error.traceback)
        if finish in (Finish.RETRY, Finish.DEAD, Finish.FAILED):
            assert error is not None
            log.log(logging.INFO if finish is Finish.RETRY else logging.WARNING,
                    "task %s attempt %d failed: %s: %s -> %s", job.name, job.attempts,
                    error.type_name, error.message, finish.label, extra={"task_id": job.id})
        if verdict.timed_out:
            self.metrics.timeouts_total[job.queue, job.name] += 1
        outcome = Outcome(job, finish, data, verdict.ttl_ms, verdict.delay_ms)
        self._acknowledge(outcome, task_def)

    def _hand_back(self, job: Job) -> None:
        """Requeue a task that has not started, without counting the attempt."""
        self._acknowledge(Outcome(job, Finish.REQUEUE, give_back=True), None)

    def _dead_letter(self, job: Job, type_name: str, message: str) -> None:
        log.warning("task %s dead-lettered: %s: %s", job.id, type_name, message,
                    extra={"task_id": job.id})
        dead_ttl_ms = int(self.app.dead_ttl_s * 1000)
        self._acknowledge(Outcome(job, Finish.DEAD, encode_error(type_name, message),
                                  ttl_ms=dead_ttl_ms), None)

    def _acknowledge(self, outcome: Outcome, task_def: TaskDef | None) -> None:
        job = outcome.job
        duration_s = time.monotonic() - job.started_at if job.started_at else None
        self.metrics.finished(job.queue, job.name if task_def else "-", outcome.finish.label,
                              duration_s)
        self._queues[job.queue].acks.add(outcome)

    async def _ack_loop(self, q: _Queue) -> None:
        """Send finished outcomes in batches: whatever piled up while the last call ran."""
        while (batch := await q.acks.next_batch(MAX_ACK_BATCH)) is not None:
            # Retries while Redis is away: a pass past the deadline means not ready.
            with self._watch.pass_of(f"ack:{q.keys.queue}", self._pass_deadline_s):
                stale = await self._finish(q, batch)
            q.acks.release(batch)
            if stale:
                self.metrics.lease_takeovers += len(stale)
                log.warning("%d finished tasks had been taken over by another worker "
                            "(possible duplicate runs): %s", len(stale), " ".join(stale[:10]))

    async def _finish(self, q: _Queue, batch: list[Ack]) -> list[str]:
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

    def _cancel_job(self, job: Job, reason: Stop) -> None:
        if job.task is not None and not job.task.done() and job.cancel_reason is None:
            job.cancel_reason = reason
            job.task.cancel()

    def _cancel_by_id(self, queue: str, task_id: str) -> None:
        """A cancel request: cancel it if running here, or drop it if only buffered."""
        running = [job for job in self._running_jobs.values()
                   if job.id == task_id and job.queue == queue]
        for job in running:
            self._cancel_job(job, Stop.REQUEST)
        if running:
            return
        for removed in self._scheduler.remove(queue, lambda j: j.id == task_id):
            # Only registered tasks reach the buffer, so the task's own result TTL applies.
            task_def = self.app.tasks[removed.name]
            error = encode_error("CancelledError", "cancelled before it started")
            ttl_ms = int(task_def.result_ttl_s * 1000)
            self._acknowledge(Outcome(removed, Finish.CANCELLED, error, ttl_ms), task_def)

    async def _sweep_loop(self) -> None:
        """Cancel tasks past their timeout, and stop tasks whose lease may be lost."""
        fence_s = self.settings.lease_s * SELF_FENCE_SHARE
        while True:
            await asyncio.sleep(TIMEOUT_SWEEP_S)
            now = time.monotonic()
            for job in list(self._running_jobs.values()):
                if job.deadline and now > job.deadline:
                    self._cancel_job(job, Stop.TIMEOUT)
                elif now - self._queues[job.queue].renewed_at > fence_s:
                    self._cancel_job(job, Stop.LEASE_LOST)

    async def _heartbeat_loop(self) -> None:
        while not self._leaving.is_set():
            # All queues at once: one whose calls hang does not hold the others' leases up.
            with self._watch.pass_of("heartbeat", self._pass_deadline_s):
                await asyncio.gather(*(self._heartbeat(q) for q in self._queues.values()))
            self._lag_peak_s = self.metrics.event_loop_lag_s  # the next entry's window
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.heartbeat_s):
                    await self._leaving.wait()

    async def _heartbeat(self, q: _Queue) -> None:
        settings = self.settings
        sent_at = time.monotonic()
        held = list(q.acks.held.values())
        try:
            upkeep = await self._broker.heartbeat(
                q.keys,
                settings.worker_id,
                held,
                self._registry_entry(q),
                self._lease_ms,
                int(settings.registry_ttl_s * 1000),
                int(self.app.result_ttl_s * 1000),
            )
        except (RedisError, OSError) as exc:
            self._health.failed(exc, "heartbeat")
            return
        self._health.succeeded()
        q.renewed_at = sent_at
        self._apply_upkeep(q, upkeep, held)

    async def _periodic_loop(self) -> None:
        """Register the app's periodic tasks, then enqueue each tick when it is due
        (off the hot path: a loop of its own, woken by the next tick's time)."""
        ticker = Ticker(self._broker.scripts, list(self.app.schedules.values()),
                        self.settings.queues, prefix=self.prefix)
        registered_at = float("-inf")
        while not self._stopping:
            try:
                async with asyncio.timeout(self._pass_deadline_s):  # a call that hangs
                    if time.monotonic() - registered_at >= REGISTER_EVERY_S:
                        await ticker.register()
                        registered_at = time.monotonic()
                    wait_s = await ticker.tick_due()
            except (RedisError, OSError, TimeoutError) as exc:
                wait_s = self._health.failed(exc, "periodic")
            # Woken at least every heartbeat: the clock correction stays fresh.
            await asyncio.sleep(min(wait_s, self.settings.heartbeat_s))

    def _registry_entry(self, q: _Queue) -> dict[str, str | int]:
        settings = self.settings
        return {
            "queues": ",".join(settings.queues),
            "concurrency": settings.concurrency,
            "in_flight": len(q.acks.held),
            "running": q.running,
            "started_ms": self._started_ms,
            "heartbeat_ms": now_ms(),
            "pid": os.getpid(),
            "loop_lag_ms": f"{self._lag_peak_s * 1000:.1f}",
        }

    def _apply_upkeep(self, q: _Queue, upkeep: Upkeep, held: list[Job]) -> None:
        self.metrics.backlog[q.keys.queue] = upkeep.backlog
        if upkeep.requeued:
            log.info("requeued %d tasks of %s whose lease ran out", upkeep.requeued,
                     q.keys.queue)
        for task_id in upkeep.cancelled:
            self._cancel_by_id(q.keys.queue, task_id)
        for job in lost_leases(held, upkeep.lost):
            self._lose(job)
        if upkeep.backlog and not self._stopping:
            q.wake.set()

    def _lose(self, job: Job) -> None:
        """The lease on ``job`` has passed to another worker: stop it if it runs here,
        drop it if it has not started (there is nothing to record: the lease is gone)."""
        if job.task is not None:
            self._cancel_job(job, Stop.LEASE_LOST)
            return
        q = self._queues[job.queue]
        if self._scheduler.remove(job.queue, lambda buffered: buffered is job):
            log.warning("task %s was taken over by another worker before it started; "
                        "dropped here", job.id, extra={"task_id": job.id})
            q.acks.forget(job)

    async def _listen_loop(self) -> None:
        """Wake fetchers on ``wake`` messages; cancel tasks on ``cancel`` messages."""
        wake = {q.keys.wake_channel: q.wake for q in self._queues.values()}
        cancel = {q.keys.cancel_channel: functools.partial(self._cancel_by_id, q.keys.queue)
                  for q in self._queues.values()}
        await listen(self._broker.redis, wake, cancel, self._health)

    async def _lag_loop(self) -> None:
        while True:
            started = time.monotonic()
            await asyncio.sleep(LOOP_LAG_PROBE_S)
            lag_s = max(0.0, time.monotonic() - started - LOOP_LAG_PROBE_S)
            self.metrics.event_loop_lag_s = lag_s
            self._lag_peak_s = max(self._lag_peak_s, lag_s)

    # -- views --------------------------------------------------------------------------

    def _active_counts(self) -> dict[str, int]:
        return {name: q.running for name, q in self._queues.items()}

    def _prefetched_counts(self) -> dict[str, int]:
        return {name: self._scheduler.count(name) for name in self._queues}

    @property
    def _pass_deadline_s(self) -> float:
        """How long one pass of a loop may take: a few Redis calls' deadlines."""
        return 3 * self.settings.redis_timeout_s

    def _readiness(self) -> tuple[bool, str]:
        if self._stopping:
            return False, "draining"
        if not self._health.reachable:
            return False, "redis unreachable"
        overdue = self._watch.overdue()
        if overdue:
            return False, "stalled: " + ", ".join(overdue)
        return True, "claiming"


def _clock_starts(job: Job, timeout_s: float | None) -> None:
    """The task starts running now (called in a pool thread for plain functions: two
    float stores, read by the sweep)."""
    started_at = time.monotonic()
    job.started_at = started_at
    if timeout_s is not None:
        job.deadline = started_at + timeout_s


def run_worker(app: App, settings: WorkerSettings, loop_factory: Callable[[], Any] | None = None
               ) -> None:
    """Run a worker in a new event loop, using uvloop when it is installed."""
    if loop_factory is None:
        try:
            import uvloop

            loop_factory = uvloop.new_event_loop
        except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
            loop_factory = None
    worker = Worker(app, settings)
    runner = asyncio.Runner(loop_factory=loop_factory)
    try:
        runner.run(worker.run())
    except BaseException:
        runner.close()
        raise
    if worker.left_running:
        # Closing the loop would wait for tasks that ignore cancellation, and the
        # interpreter's exit for threads that never return: neither may hold the exit up.
        log.warning("exiting with %d tasks or threads still running", worker.left_running)
        logging.shutdown()
        os._exit(0)
    runner.close()
