"""A Redis server of their own for the chaos tests, so restarting it cannot
disturb the other tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from corral.embedded import EmbeddedRedis


@pytest.fixture(scope="module")
def chaos_redis() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(appendonly=True) as server:
        yield server
