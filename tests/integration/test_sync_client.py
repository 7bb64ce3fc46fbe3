"""``corral.SyncClient`` against a real Redis and worker: no event loop in the caller."""

from __future__ import annotations

import threading

import pytest

import corral
from tests.apps.basic import app
from tests.support.workers import WorkerProcess


@pytest.fixture
def worker(redis_url: str) -> WorkerProcess:
    process = WorkerProcess(redis_url).wait_started()
    yield process
    process.close()


def test_enqueue_results_and_status_without_a_loop(redis_url: str, worker: WorkerProcess) -> None:
    with corral.SyncClient(redis_url, app=app) as client:
        handle = client.enqueue("echo", [1], {"b": 2})
        assert handle.result(timeout=30) == {"args": [1], "kwargs": {"b": 2}}
        assert handle.status() == "succeeded"
        assert client.status(handle.id, queue=handle.queue) == "succeeded"
        handles = client.enqueue_many([corral.Enqueue("noop", [n]) for n in range(20)])
        assert [h.result(timeout=30) for h in handles] == list(range(20))
        with pytest.raises(corral.InvalidTask):
            client.enqueue("no-such-task")


def test_cancel_and_a_shared_client_across_threads(redis_url: str) -> None:
    with corral.SyncClient(redis_url) as client:
        delayed = client.enqueue("noop", [1], delay=60)
        assert client.cancel(delayed.id) is True
        assert delayed.status() == "cancelled"
        with pytest.raises(corral.TaskCancelled):
            delayed.result(timeout=5)
        ids: list[str] = []

        def produce() -> None:
            for n in range(25):
                ids.append(client.enqueue("noop", [n]).id)

        threads = [threading.Thread(target=produce) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(set(ids)) == 100
        assert {client.status(i) for i in ids} == {"queued"}


def test_a_closed_client_refuses_calls(redis_url: str) -> None:
    client = corral.SyncClient(redis_url)
    client.close()
    client.close()  # closing twice is harmless
    with pytest.raises(RuntimeError, match="closed"):
        client.enqueue("noop")
