"""The task context, progress, lifecycle hooks, middleware and the consumer span, in a
worker on real Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import corral
from corral_worker import Worker
from tests.apps import context
from tests.support.inproc import running_worker


@pytest.fixture
async def worker(redis_url: str) -> AsyncIterator[Worker]:
    context.events.clear()
    context.app.state["url"] = redis_url
    async with running_worker(redis_url, context.app, concurrency=4) as running:
        yield running


async def reported(handle: corral.TaskHandle[object]) -> corral.Progress | None:
    """The task's progress once it has reported some (None after 20 s)."""
    for _ in range(400):
        if (seen := await handle.progress()) is not None:
            return seen
        await asyncio.sleep(0.05)
    return None


async def test_current_task_describes_the_attempt(worker: Worker, client: corral.Client) -> None:
    before = time.time()
    handle = await client.enqueue("ctx.describe", queue="default")
    seen = await handle.result(timeout=30)
    assert seen["id"] == handle.id and seen["name"] == "ctx.describe"
    assert seen["queue"] == "default" and seen["attempt"] == 1
    assert before - 1 <= seen["enqueued_at"] <= time.time()
    assert 25 < seen["deadline_in_s"] <= 30
    assert seen["pool"] == "the-pool"  # made by the startup hook
    sync = await (await client.enqueue("ctx.describe_sync")).result(timeout=30)
    assert sync["name"] == "ctx.describe_sync" and sync["deadline_in_s"] is None
    with pytest.raises(LookupError, match="only available inside a running task"):
        corral.current_task()


async def test_attempt_counts_from_one(worker: Worker, client: corral.Client) -> None:
    handle = await client.enqueue("ctx.flaky")
    assert await handle.result(timeout=30) == 3


async def test_progress_is_visible_while_the_task_runs(
        worker: Worker, client: corral.Client) -> None:
    handle = await client.enqueue("ctx.progress", ["test:progress-go"])
    seen = await reported(handle)
    assert seen == corral.Progress(0.25, "a quarter")
    await client.redis.rpush("test:progress-go", "1")
    assert await handle.result(timeout=30) == "finished"
    # The last value reported before the end was flushed while the task still ran, or
    # dropped: a finished record is never written to again.
    assert await handle.progress() in (corral.Progress(0.25, "a quarter"),
                                       corral.Progress(1.0, "done"))
    sync = await client.enqueue("ctx.progress_sync")
    seen = await reported(sync)
    assert seen == corral.Progress(0.5, "half, from a thread")
    assert await sync.result(timeout=30) == "ok"


async def test_middleware_wraps_each_attempt_in_order(
        worker: Worker, client: corral.Client) -> None:
    await (await client.enqueue("ctx.describe")).result(timeout=30)
    with pytest.raises(corral.TaskFailed):
        await (await client.enqueue("ctx.fails")).result(timeout=30)
    ran = [e for e in context.events if e != "startup"]
    # `after` gets the result: the describe task returns a dict with its own id.
    assert [e.split(":{")[0] for e in ran[:4]] == [
        "outer.before:ctx.describe", "inner.before:ctx.describe",
        "inner.after:ctx.describe", "outer.after:ctx.describe"]
    assert "'attempt': 1" in ran[2] and ran[2].split(":", 1)[1] == ran[3].split(":", 1)[1]
    assert ran[4:] == ["outer.before:ctx.fails", "inner.before:ctx.fails",
                       "inner.after:ctx.fails:ValueError", "outer.after:ctx.fails:ValueError"]


async def test_startup_and_shutdown_hooks_run_once(redis_url: str) -> None:
    context.events.clear()
    context.app.state["url"] = redis_url
    async with running_worker(redis_url, context.app):
        assert context.events == ["startup"]
    assert context.events == ["startup", "shutdown"]
    assert "pool" not in context.app.state


def test_hooks_and_middleware_are_checked() -> None:
    def not_async() -> None: ...

    with pytest.raises(corral.ConfigError, match="must be an async function"):
        corral.App(on_startup=[not_async])  # type: ignore[list-item]
    with pytest.raises(corral.ConfigError, match=r"must be a corral\.Middleware"):
        corral.App(middleware=[object()])  # type: ignore[list-item]


async def test_the_run_is_a_consumer_span_child_of_the_enqueue(
        worker: Worker, client: corral.Client, spans: InMemorySpanExporter) -> None:
    handle = await client.enqueue("ctx.describe")
    await handle.result(timeout=30)
    failing = await client.enqueue("ctx.fails")
    with pytest.raises(corral.TaskFailed):
        await failing.result(timeout=30)
    for _ in range(200):  # spans end just after the results are written
        if len(spans.get_finished_spans()) >= 4:
            break
        await asyncio.sleep(0.05)
    by_kind = {(s.kind, s.attributes["corral.task.name"] if s.attributes else ""): s
               for s in spans.get_finished_spans()}
    producer = by_kind[SpanKind.PRODUCER, "ctx.describe"]
    consumer = by_kind[SpanKind.CONSUMER, "ctx.describe"]
    assert consumer.name == "run default" and consumer.parent is not None
    assert producer.context is not None
    assert consumer.parent.span_id == producer.context.span_id
    assert consumer.context is not None and consumer.context.trace_id == producer.context.trace_id
    assert consumer.attributes is not None
    assert consumer.attributes["messaging.message.id"] == handle.id
    assert consumer.attributes["messaging.operation.type"] == "process"
    failed = by_kind[SpanKind.CONSUMER, "ctx.fails"]
    assert failed.status.status_code is StatusCode.ERROR
    assert any(event.name == "exception" for event in failed.events)
