from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.workers import WorkerProcess


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    """Worker processes a test starts; each is closed when the test ends."""
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.close()
