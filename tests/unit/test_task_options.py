"""Every ``@app.task`` and ``App`` option is checked when the task is defined, with one
ConfigError line naming the option."""

from __future__ import annotations

from typing import Any

import pytest

from corral import App
from corral.errors import ConfigError


async def _fn() -> None:
    return None


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"result_ttl": -3}, "result_ttl"),
        ({"result_ttl": float("inf")}, "result_ttl"),
        ({"result_ttl": "60"}, "result_ttl"),
        ({"retry_backoff": -1}, "retry_backoff"),
        ({"retry_backoff_max": -1}, "retry_backoff_max"),
        ({"retry_backoff": 10, "retry_backoff_max": 1}, "retry_backoff_max"),
        ({"retries": 1.5}, "retries"),
        ({"retries": -1}, "retries"),
        ({"retries": True}, "retries"),
        ({"retries": "2"}, "retries"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": -1.0}, "timeout"),
        ({"timeout": float("nan")}, "timeout"),
        ({"dead_ttl": 0}, "dead_ttl"),
        ({"dead_letter": "yes"}, "dead_letter"),
        ({"queue": "bad{name}"}, "queue"),
        ({"queue": 5}, "queue"),
    ],
)
def test_bad_task_options_raise_config_error(options: dict[str, Any], named: str) -> None:
    app = App()
    with pytest.raises(ConfigError) as caught:
        app.task(name="t", **options)(_fn)
    message = str(caught.value)
    assert message.startswith(f"task 't': {named}") and "\n" not in message
    assert app.tasks == {}


def test_result_ttl_zero_means_keep_nothing_and_none_means_the_apps() -> None:
    app = App(result_ttl_s=45, dead_ttl_s=90)
    app.task(name="none", result_ttl=0)(_fn)
    app.task(name="default")(_fn)
    app.task(name="own", result_ttl=5, dead_ttl=7, retries=3, retry_backoff=0)(_fn)
    assert app.tasks["none"].result_ttl_s == 0
    assert app.tasks["default"].result_ttl_s == 45 and app.tasks["default"].dead_ttl_s == 90
    own = app.tasks["own"]
    assert (own.result_ttl_s, own.dead_ttl_s, own.retries, own.retry_backoff_s) == (5, 7, 3, 0)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"result_ttl_s": -1}, "result_ttl_s"),
        ({"dead_ttl_s": 0}, "dead_ttl_s"),
        ({"max_dead": 0}, "max_dead"),
        ({"max_dead": 2.5}, "max_dead"),
        ({"max_payload_bytes": -5}, "max_payload_bytes"),
    ],
)
def test_bad_app_options_raise_config_error(options: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError, match=f"^App: {named}: "):
        App(**options)


def test_retention_defaults() -> None:
    app = App()
    assert (app.result_ttl_s, app.dead_ttl_s, app.max_dead) == (600.0, 7 * 86_400.0, 100_000)
