"""The trace context rides in the payload; a damaged one is dropped, never fatal."""

from __future__ import annotations

import pytest

from corral.serialization import decode_call, decode_payload, encode_payload


def test_the_trace_context_round_trips_beside_the_arguments() -> None:
    data = encode_payload([1], {"a": 2}, trace={"traceparent": "00-ab-cd-01"})
    call = decode_call(data)
    assert (call.args, call.kwargs, call.trace) == ([1], {"a": 2}, {"traceparent": "00-ab-cd-01"})
    assert decode_payload(data) == ([1], {"a": 2})
    assert b"trace" not in encode_payload([1], {}, trace=None)


@pytest.mark.parametrize("trace", ['"text"', "[1]", '{"traceparent": 5}', "null"])
def test_a_damaged_trace_context_is_dropped(trace: str) -> None:
    call = decode_call(f'{{"args": [1], "kwargs": {{}}, "trace": {trace}}}'.encode())
    assert call.args == [1] and call.trace is None
