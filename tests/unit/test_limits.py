"""Rate and concurrency limit options: parsing, validation and the record's form."""

from __future__ import annotations

from typing import Any

import pytest

from corral import App
from corral.errors import ConfigError
from corral.limits import Limits, Rate, parse_rate


@pytest.mark.parametrize(("text", "rate"), [
    ("100/s", Rate(100, 1_000)), ("30/m", Rate(30, 60_000)), ("500/h", Rate(500, 3_600_000)),
    (" 7 / s ", Rate(7, 1_000)),
])
def test_rates_parse_per_second_minute_and_hour(text: str, rate: Rate) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["100/x", "0/s", "-1/s", "1.5/s", "100", "/s", "100/sec", ""])
def test_bad_rates_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="rate limit"):
        parse_rate(text)


async def _fn(customer_id: str = "", n: int = 0) -> None:
    return None


@pytest.mark.parametrize(("options", "named"), [
    ({"rate_limit": "100/x"}, "rate_limit"),
    ({"rate_limit": "0/s"}, "rate_limit"),
    ({"rate_limit": 100}, "rate_limit"),
    ({"concurrency_limit": 0}, "concurrency_limit"),
    ({"concurrency_limit": -5}, "concurrency_limit"),
    ({"concurrency_limit": 2.0}, "concurrency_limit"),
    ({"concurrency_limit": True}, "concurrency_limit"),
    ({"concurrency_limit": 1, "limit_key": "customer_id"}, "limit_key"),
    ({"limit_key": lambda customer_id, **_: customer_id}, "limit_key"),
])
def test_bad_limit_options_raise_config_error(options: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError, match=f"task 'bad': .*{named}"):
        App().task(name="bad", **options)(_fn)


def test_a_task_s_limits_are_written_for_its_record() -> None:
    app = App()
    both = app.task(name="api", rate_limit="10/m", concurrency_limit=3)(_fn)
    assert both.definition.limits == Limits("api", Rate(10, 60_000), 3)
    assert both.definition.limits.spec([], {}) == "3|10|60000|api"
    keyed = app.task(name="per_customer", concurrency_limit=1,
                     limit_key=lambda customer_id, **_: customer_id)(_fn)
    assert keyed.definition.limits is not None
    assert keyed.definition.limits.spec([], {"customer_id": "acme"}) == "1|0|0|per_customer|acme"
    assert keyed.definition.limits.spec(["acme"], {}) == "1|0|0|per_customer|acme"
    assert app.task(name="free")(_fn).definition.limits is None


@pytest.mark.parametrize(("key", "message"), [
    (lambda customer_id, **_: None, "must return a str or int"),
    (lambda customer_id, **_: "", "1-200 characters"),
    (lambda customer_id, **_: "x" * 201, "1-200 characters"),
    (lambda *_: 1 / 0, "limit_key failed: ZeroDivisionError"),
])
def test_a_limit_key_that_gives_no_usable_key_is_refused(key: Any, message: str) -> None:
    limits = Limits("t", concurrency=1, key=key)
    with pytest.raises(ValueError, match=message):
        limits.spec(["acme"], {})
