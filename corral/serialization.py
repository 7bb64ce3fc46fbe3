"""Payload encoding: JSON only, never pickle. Pure functions, no I/O."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from corral.defaults import ERROR_MESSAGE_MAX_CHARS, TRACEBACK_MAX_CHARS
from corral.errors import InvalidTask

DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_decode = json.JSONDecoder().decode


class PayloadError(ValueError):
    """A stored payload cannot be turned back into call arguments."""


def encode_payload(
    args: list[Any] | tuple[Any, ...],
    kwargs: dict[str, Any],
    max_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    trace: dict[str, str] | None = None,
) -> bytes:
    """The stored form of a call's arguments (and, when tracing, the producer's trace
    context); raises InvalidTask when it cannot be stored."""
    if not isinstance(args, (list, tuple)):
        raise InvalidTask(f"args must be a list, not {type(args).__name__}")
    if not isinstance(kwargs, dict):
        raise InvalidTask(f"kwargs must be an object, not {type(kwargs).__name__}")
    for key in kwargs:
        if not isinstance(key, str):
            raise InvalidTask(f"kwargs keys must be strings, not {type(key).__name__}")
    try:
        call: dict[str, Any] = {"args": list(args), "kwargs": kwargs}
        if trace:
            call["trace"] = trace
        text = _encoder.encode(call)
    except (TypeError, ValueError) as exc:
        raise InvalidTask(f"arguments are not JSON-serialisable: {exc}") from None
    data = text.encode()
    if len(data) > max_bytes:
        raise InvalidTask(f"payload is {len(data)} bytes, over the limit of {max_bytes} bytes")
    return data


@dataclass(frozen=True, slots=True)
class Call:
    args: list[Any]
    kwargs: dict[str, Any]
    trace: dict[str, str] | None  # the producer's trace context, when it traced


def decode_payload(
    data: bytes, max_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
) -> tuple[list[Any], dict[str, Any]]:
    """Call arguments from their stored form; raises PayloadError with the reason."""
    call = decode_call(data, max_bytes)
    return call.args, call.kwargs


def decode_call(data: bytes, max_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES) -> Call:
    """A call from its stored form; raises PayloadError with the reason. A damaged trace
    context is dropped, never fatal: it only links spans."""
    if len(data) > max_bytes:
        raise PayloadError(f"payload is {len(data)} bytes, over the limit of {max_bytes} bytes")
    try:
        value = _decode(data.decode())
    except (UnicodeDecodeError, ValueError) as exc:
        raise PayloadError(f"payload is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise PayloadError(f"payload must be a JSON object, not {type(value).__name__}")
    args = value.get("args", [])
    kwargs = value.get("kwargs", {})
    if not isinstance(args, list):
        raise PayloadError(f"payload 'args' must be a list, not {type(args).__name__}")
    if not isinstance(kwargs, dict):
        raise PayloadError(f"payload 'kwargs' must be an object, not {type(kwargs).__name__}")
    trace = value.get("trace")
    if not (isinstance(trace, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in trace.items())):
        trace = None
    return Call(args, kwargs, trace)


def encode_result(value: Any) -> bytes:
    try:
        return _encoder.encode(value).encode()
    except (TypeError, ValueError) as exc:
        raise TypeError(f"task result is not JSON-serialisable: {exc}") from None


def decode_json(data: bytes | str) -> Any:
    return _decode(data.decode() if isinstance(data, bytes) else data)


def encode_error(type_name: str, message: str, traceback: str = "") -> bytes:
    """The stored form of an error, its message and traceback capped in size (a task
    record keeps several)."""
    return _encoder.encode({
        "type": type_name,
        "message": cap_text(message, ERROR_MESSAGE_MAX_CHARS),
        "traceback": cap_text(traceback, TRACEBACK_MAX_CHARS),
    }).encode()


def cap_text(text: str, max_chars: int) -> str:
    """``text`` if it fits in ``max_chars``, else its first quarter and its last part
    around a marker saying how much was cut: a traceback's end names the exception."""
    if len(text) <= max_chars:
        return text
    head = max_chars // 4
    longest_marker = len(f"\n[... {len(text)} characters cut ...]\n")
    tail = max(0, max_chars - head - longest_marker)
    marker = f"\n[... {len(text) - head - tail} characters cut ...]\n"
    return text[:head] + marker + text[len(text) - tail:]


def decode_error(data: bytes | None) -> dict[str, str]:
    """An error record; tolerant of damaged data, since it is only shown to people."""
    if not data:
        return {"type": "", "message": "", "traceback": ""}
    try:
        value = decode_json(data)
    except ValueError:
        return {"type": "Unknown", "message": data.decode(errors="replace"), "traceback": ""}
    if not isinstance(value, dict):
        return {"type": "Unknown", "message": str(value), "traceback": ""}
    return {k: str(value.get(k, "")) for k in ("type", "message", "traceback")}
