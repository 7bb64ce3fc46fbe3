from __future__ import annotations

import random

import pytest

from corral.app import App, load_app
from corral.connection import redact
from corral.errors import ConfigError, InvalidTask
from corral.keys import DEFAULT_PREFIX, queue_keys, queue_of_channel, validate_queue_name
from corral.serialization import PayloadError, decode_payload, encode_payload
from corral_worker.policy import after_failure, is_poison, retry_delay_s
from corral_worker.settings import WorkerSettings, parse_queue_weights


def test_every_key_of_a_queue_shares_one_hash_tag() -> None:
    keys = queue_keys("emails", DEFAULT_PREFIX)
    names = [*keys.ready, keys.scheduled, keys.leased, keys.dead, keys.dedupe, keys.workers,
             keys.task("abc"), keys.worker("pod-1")]
    assert all(name.startswith("corral:{emails}:") for name in names)
    assert queue_of_channel(keys.wake_channel) == "emails"


@pytest.mark.parametrize("name", ["", "a{b}", "has space", "-lead", "x" * 101])
def test_bad_queue_names(name: str) -> None:
    with pytest.raises(ValueError):
        validate_queue_name(name)


def test_payload_round_trip_and_limits() -> None:
    data = encode_payload(["a", 1], {"k": [1.5, None]})
    assert decode_payload(data) == (["a", 1], {"k": [1.5, None]})
    with pytest.raises(InvalidTask, match="JSON"):
        encode_payload([object()], {})
    with pytest.raises(InvalidTask, match="JSON"):
        encode_payload([float("nan")], {})
    with pytest.raises(InvalidTask, match="over the limit"):
        encode_payload(["x" * 2000], {}, max_bytes=1024)
    with pytest.raises(InvalidTask, match="kwargs keys"):
        encode_payload([], {1: 2})  # type: ignore[dict-item]


@pytest.mark.parametrize(
    "raw", [b"\xff\xfe", b"not json", b"[1,2]", b'{"args": 5}', b'{"kwargs": []}']
)
def test_bad_payloads_are_explained(raw: bytes) -> None:
    with pytest.raises(PayloadError):
        decode_payload(raw)


def test_retry_delay_grows_and_is_capped() -> None:
    rand = random.Random(1)
    delays = [retry_delay_s(n, 1.0, 10.0, rand) for n in range(1, 8)]
    assert 0.5 <= delays[0] <= 1.0
    assert 4.0 <= delays[3] <= 8.0
    assert all(d <= 10.0 for d in delays)


def test_after_failure() -> None:
    assert after_failure(1, 2, True, 1, 10).outcome == "retry"
    assert after_failure(3, 2, True, 1, 10).outcome == "dead"
    assert after_failure(1, 0, False, 1, 10).outcome == "failed"
    assert not is_poison(3, 2) and is_poison(14, 2)


def test_queue_weights_parsing() -> None:
    assert parse_queue_weights("critical=5, default") == {"critical": 5, "default": 1}
    for bad in ["a=0", "a=101", "a=x", "a,a", "", "a b=1"]:
        with pytest.raises(ValueError):
            parse_queue_weights(bad)


def test_settings_validate() -> None:
    with pytest.raises(ValueError):
        WorkerSettings(redis_url="redis://x", concurrency=0)
    with pytest.raises(ValueError):
        WorkerSettings(redis_url="redis://x", queues={"a": 0})
    with pytest.raises(ValueError):
        WorkerSettings(redis_url="redis://x", unknown_option=1)  # type: ignore[call-arg]
    s = WorkerSettings(redis_url="redis://x", lease_s=30)
    assert s.heartbeat_s == 5.0 and s.registry_ttl_s == 15.0


def test_app_registration() -> None:
    app = App()

    @app.task(name="t", retries=2)
    async def t() -> None: ...

    @app.task
    def plain() -> None: ...

    assert app.tasks["t"].retries == 2 and app.tasks["t"].is_async
    assert not app.tasks[f"{__name__}.test_app_registration.<locals>.plain"].is_async
    with pytest.raises(ConfigError, match="twice"):
        app.task(name="t")(t)
    with pytest.raises(ConfigError):
        app.task(name="bad name!")(t)


def test_load_app_errors() -> None:
    assert isinstance(load_app("tests.apps.basic:app"), App)
    for path in ["nocolon", "no_such_module_x:app", "tests.apps.basic:missing"]:
        with pytest.raises(ConfigError):
            load_app(path)


def test_redact() -> None:
    assert redact("redis://user:secret@host:6379/0") == "redis://user:***@host:6379/0"
    assert redact("redis://:secret@host/0") == "redis://:***@host/0"
    assert redact("redis://host:6379") == "redis://host:6379"
