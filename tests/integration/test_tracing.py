"""OpenTelemetry spans (corral[otel]) with the SDK's in-memory exporter, on real Redis."""

from __future__ import annotations

import json

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from redis.asyncio import Redis

from corral import Client, Enqueue, tracing
from corral.keys import DEFAULT_PREFIX, queue_keys


async def test_enqueue_is_a_producer_span_whose_context_travels_with_the_task(
        client: Client, redis_conn: Redis, spans: InMemorySpanExporter) -> None:
    handle = await client.enqueue("noop", [1], queue="traced")
    (span,) = spans.get_finished_spans()
    assert span.kind is SpanKind.PRODUCER and span.name == "enqueue traced"
    assert span.attributes is not None
    assert span.attributes["messaging.system"] == "corral"
    assert span.attributes["messaging.destination.name"] == "traced"
    assert span.attributes["messaging.operation.type"] == "send"
    assert span.attributes["messaging.message.id"] == handle.id
    payload = await redis_conn.hget(queue_keys("traced", DEFAULT_PREFIX).task(handle.id), "payload")
    carrier = json.loads(payload)["trace"]
    assert span.context is not None
    trace_id = format(span.context.trace_id, "032x")
    assert carrier["traceparent"].split("-")[1] == trace_id


async def test_a_batch_is_one_span_and_every_task_carries_it(
        client: Client, redis_conn: Redis, spans: InMemorySpanExporter) -> None:
    handles = await client.enqueue_many([Enqueue("noop", [n]) for n in range(5)])
    (span,) = spans.get_finished_spans()
    assert span.attributes is not None
    assert span.attributes["messaging.batch.message_count"] == 5
    parents = set()
    for handle in handles:
        payload = await redis_conn.hget(_task_key(handle.id), "payload")
        parents.add(json.loads(payload)["trace"]["traceparent"])
    assert len(parents) == 1


async def test_without_a_recording_span_nothing_is_stored(client: Client,
                                                          redis_conn: Redis) -> None:
    tracing.use_tracer_provider(None)  # the global provider: the API's no-op one here
    handle = await client.enqueue("noop", [1])
    payload = await redis_conn.hget(_task_key(handle.id), "payload")
    assert "trace" not in json.loads(payload)


def _task_key(task_id: str) -> str:
    return queue_keys("default", DEFAULT_PREFIX).task(task_id)
