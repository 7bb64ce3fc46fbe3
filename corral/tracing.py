"""OpenTelemetry tracing, when ``opentelemetry-api`` is installed (``corral[otel]``):
``enqueue`` runs in a producer span whose context travels in the task's payload, and
the worker runs each attempt in a consumer span linked to it as its child. Attributes
follow the OpenTelemetry messaging semantic conventions. Without the package, or
with it but no TracerProvider set, every function here is a no-op.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from typing import Any

try:
    from opentelemetry import propagate, trace
    from opentelemetry.trace import ProxyTracerProvider, SpanKind, Status, StatusCode

    INSTALLED = True
except ImportError:  # the extra is not installed
    INSTALLED = False

SYSTEM = "corral"
Carrier = dict[str, str]


_provider: Any = None  # None: the global TracerProvider


_RECHECK_S = 1.0
_active = (False, -_RECHECK_S)  # the answer, and time.monotonic() when it was found


def active() -> bool:
    """Whether spans are made: the API is installed and a TracerProvider is set (the
    API alone, as many applications have it through other packages, costs nothing).
    Looked up at most once a second: OpenTelemetry reads the environment each time."""
    global _active
    if not INSTALLED:
        return False
    answer, at = _active
    now = time.monotonic()
    if now - at >= _RECHECK_S:
        answer = _provider is not None or not isinstance(
            trace.get_tracer_provider(), ProxyTracerProvider)
        _active = (answer, now)
    return answer


def use_tracer_provider(provider: Any) -> None:
    """Send Corral's spans to ``provider`` instead of the global one (None: back to the
    global one); for tests and for processes that keep several providers."""
    global _provider, _active
    _provider = provider
    _active = (False, -_RECHECK_S)  # look again at the next call


def _tracer() -> Any:
    return trace.get_tracer("corral", tracer_provider=_provider)


class Publish:
    """The producer span of one enqueue call, as ``producing`` yields it."""

    __slots__ = ("carrier", "span")

    def __init__(self, span: Any = None, carrier: Carrier | None = None) -> None:
        self.span = span
        self.carrier = carrier  # stored with each task; None when nothing records

    def sent(self, queue: str, task_ids: list[str]) -> None:
        if self.span is None:
            return
        self.span.update_name(f"enqueue {queue}")
        self.span.set_attribute("messaging.destination.name", queue)
        if len(task_ids) == 1:
            self.span.set_attribute("messaging.message.id", task_ids[0])
        else:
            self.span.set_attribute("messaging.batch.message_count", len(task_ids))


_OFF = Publish()


@contextlib.contextmanager
def producing(task_name: str) -> Iterator[Publish]:
    """A producer span around an enqueue call; its ``carrier`` goes into the payload."""
    if not active():
        yield _OFF
        return
    attributes = {
        "messaging.system": SYSTEM,
        "messaging.operation.type": "send",
        "messaging.operation.name": "enqueue",
        "corral.task.name": task_name,
    }
    with _tracer().start_as_current_span("enqueue", kind=SpanKind.PRODUCER,
                                         attributes=attributes) as span:
        carrier: Carrier = {}
        propagate.inject(carrier)
        yield Publish(span, carrier or None)


@contextlib.contextmanager
def consuming(queue: str, task_name: str, task_id: str, attempt: int,
              carrier: Mapping[str, str] | None) -> Iterator[None]:
    """A consumer span around one attempt, the child of the producer's span."""
    if not active():
        yield
        return
    parent = propagate.extract(dict(carrier)) if carrier else None
    attributes = {
        "messaging.system": SYSTEM,
        "messaging.destination.name": queue,
        "messaging.operation.type": "process",
        "messaging.operation.name": "run",
        "messaging.message.id": task_id,
        "messaging.message.delivery_attempt": attempt,  # corral-specific: 1 on the first run
        "corral.task.name": task_name,
    }
    with _tracer().start_as_current_span(
            f"run {queue}", context=parent, kind=SpanKind.CONSUMER, attributes=attributes,
            record_exception=True, set_status_on_exception=True) as span:
        try:
            yield
        except BaseException as exc:
            # CancelledError and friends are not Exceptions: record them too.
            if not isinstance(exc, Exception):
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
