"""Hostile values for the producer: ``Client.enqueue``/``enqueue_many`` and
``corral enqueue``. Every bad value gets corral.InvalidTask (or a one-line CLI error
and a non-zero exit), and nothing at all is written to Redis."""

from __future__ import annotations

import asyncio
import contextlib
import io
import math
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral import Client, Enqueue, InvalidTask
from corral.cli import main
from corral.embedded import EmbeddedRedis
from corral.serialization import DEFAULT_MAX_PAYLOAD_BYTES
from tests.support.workers import ROOT


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with EmbeddedRedis() as server:
        yield server.url


def _dbsize(url: str) -> int:
    with redis.Redis.from_url(url) as conn:
        return int(conn.dbsize())


class _Opaque:
    pass


not_json = st.one_of(
    st.builds(_Opaque), st.sets(st.integers(), min_size=1), st.binary(min_size=1),
    st.just(math.nan), st.just(math.inf), st.just(-math.inf), st.complex_numbers(),
    st.frozensets(st.integers(), min_size=1),
)
# Positional or keyword arguments with something that is not JSON inside.
bad_args = st.one_of(
    st.lists(not_json, min_size=1, max_size=3),
    st.lists(st.dictionaries(st.text(max_size=5), not_json, min_size=1), min_size=1),
    st.integers(), st.text(min_size=1), st.dictionaries(st.text(), st.integers(), min_size=1),
    st.just(b"bytes"),
)
bad_kwargs = st.one_of(
    st.dictionaries(st.text(max_size=5), not_json, min_size=1),
    st.dictionaries(st.integers(), st.integers(), min_size=1),
    st.lists(st.integers(), min_size=1), st.text(min_size=1), st.integers(),
)
bad_priority = st.one_of(
    st.integers().filter(lambda p: not 0 <= p <= 9), st.booleans(), st.floats(),
    st.text(), st.none(), st.just([1]),
)
bad_delay = st.one_of(
    st.floats(max_value=-1e-9), st.just(math.nan), st.just(math.inf), st.text(), st.just([1]),
)
bad_queue = st.one_of(
    st.text().filter(lambda q: not q or not q[0].isalnum() or len(q) > 100 or any(
        not (c.isascii() and (c.isalnum() or c in "._-")) for c in q)),
    st.integers(min_value=1), st.just("a{b}"),
)
bad_name = st.one_of(st.just(""), st.integers(), st.none(), st.binary(min_size=1))
bad_key = st.one_of(st.just(""), st.integers(), st.binary(min_size=1), st.just([1]))


@st.composite
def bad_calls(draw: st.DrawFn) -> dict[str, Any]:
    """One enqueue call with exactly one bad value (the others are fine)."""
    call: dict[str, Any] = {"name": "noop", "args": [1], "kwargs": {}, "queue": "default",
                            "priority": 0, "delay": 0.0, "key": None}
    field = draw(st.sampled_from(["name", "args", "kwargs", "queue", "priority", "delay",
                                  "key", "size"]))
    if field == "size":
        call["args"] = ["x" * (DEFAULT_MAX_PAYLOAD_BYTES + draw(st.integers(0, 100)))]
    else:
        strategy = {"name": bad_name, "args": bad_args, "kwargs": bad_kwargs,
                    "queue": bad_queue, "priority": bad_priority, "delay": bad_delay,
                    "key": bad_key}[field]
        call[field] = draw(strategy)
    return call


async def _enqueue(url: str, call: dict[str, Any], many: bool) -> None:
    async with Client.from_url(url) as client:
        if many:
            good = Enqueue("noop", args=[0])
            await client.enqueue_many([good, call, good])
        else:
            await client.enqueue(call["name"], call["args"], call["kwargs"],
                                 queue=call["queue"], priority=call["priority"],
                                 delay=call["delay"], key=call["key"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.data_too_large])
@given(call=bad_calls(), many=st.booleans())
def test_bad_enqueue_values_raise_invalid_task_and_write_nothing(
    url: str, call: dict[str, Any], many: bool
) -> None:
    with pytest.raises(InvalidTask) as raised:
        asyncio.run(_enqueue(url, call, many))
    assert str(raised.value)
    assert _dbsize(url) == 0


def _cli(url: str, argv: list[str]) -> tuple[int, str]:
    """``corral`` run in this process (fast enough to fuzz); exit code and stderr."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            main(["--redis-url", url, *argv])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        else:
            code = 0
    return code, stderr.getvalue()


text_arg = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40
)
cli_options = st.one_of(
    st.tuples(st.just("--args"), text_arg.filter(lambda t: not t.strip().startswith("["))),
    st.tuples(st.just("--args"), st.sampled_from(["[NaN]", "[Infinity]", "[-Infinity]",
                                                  '["x", {"a": NaN}]', "[1", "[1]]"])),
    st.tuples(st.just("--kwargs"), text_arg.filter(lambda t: not t.strip().startswith("{"))),
    st.tuples(st.just("--kwargs"), st.sampled_from(['{"a": NaN}', '{"a": 1', "{1: 2}"])),
    st.tuples(st.just("--priority"), st.one_of(
        st.integers().filter(lambda p: not 0 <= p <= 9).map(str),
        text_arg.filter(lambda t: not t.strip().lstrip("+-").isdigit()))),
    st.tuples(st.just("--delay"), st.one_of(
        st.floats(max_value=-1e-9).map(repr), st.sampled_from(["nan", "inf", "-inf", "1e999"]),
        text_arg.filter(lambda t: not _is_float(t)))),
    st.tuples(st.just("--queue"), st.sampled_from(["", "a{b}", "-x", "x" * 101, "a b", "é"])),
)


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(option=cli_options, task=st.sampled_from(["noop", "echo"]))
def test_bad_cli_enqueue_arguments_get_one_line_and_write_nothing(
    url: str, option: tuple[str, str], task: str
) -> None:
    flag, value = option
    code, stderr = _cli(url, ["enqueue", task, f"{flag}={value}"])
    assert code != 0
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("corral"), stderr
    assert "Traceback" not in stderr
    assert _dbsize(url) == 0


def test_cli_payload_over_the_limit_is_refused(url: str) -> None:
    # In this process: one argument that large is more than exec() passes on.
    big = '["' + "x" * (DEFAULT_MAX_PAYLOAD_BYTES + 1) + '"]'
    code, stderr = _cli(url, ["enqueue", "noop", "--args", big])
    assert code != 0 and "over the limit" in stderr and stderr.count("\n") == 1
    assert _dbsize(url) == 0


@pytest.mark.parametrize("argv", [
    ["enqueue", "", "--args", "[1]"],
    ["enqueue", "noop", "--args", "[NaN]"],
    ["enqueue", "noop", "--priority", "10"],
    ["enqueue", "noop", "--delay", "nan"],
    ["enqueue", "noop", "--key", ""],
])
def test_bad_cli_enqueue_in_a_real_process(url: str, argv: list[str]) -> None:
    result = subprocess.run([sys.executable, "-m", "corral", "--redis-url", url, *argv],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert _dbsize(url) == 0
