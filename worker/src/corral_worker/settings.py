"""Worker configuration, validated once at start-up and passed down."""

from __future__ import annotations

import os
import socket
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from corral import defaults
from corral.keys import validate_prefix, validate_queue_name
from corral.serialization import DEFAULT_MAX_PAYLOAD_BYTES

DEFAULT_QUEUES = {"default": 1}
# Loopback unless asked otherwise; the operator's pods bind 0.0.0.0.
DEFAULT_METRICS_HOST = "127.0.0.1"


def parse_queue_weights(text: str) -> dict[str, int]:
    """``critical=5,default=1`` (a bare name has weight 1) -> {"critical": 5, "default": 1}."""
    weights: dict[str, int] = {}
    for part in text.split(","):
        name, sep, weight_text = part.strip().partition("=")
        name = name.strip()
        if not name:
            raise ValueError(f"empty queue name in {text!r}")
        validate_queue_name(name)
        try:
            weight = int(weight_text) if sep else 1
        except ValueError:
            raise ValueError(
                f"queue {name!r}: weight must be an integer, not {weight_text!r}"
            ) from None
        if not 1 <= weight <= 100:
            raise ValueError(f"queue {name!r}: weight must be between 1 and 100, not {weight}")
        if name in weights:
            raise ValueError(f"queue {name!r} is listed twice")
        weights[name] = weight
    return weights


def default_worker_id() -> str:
    """The pod name on Kubernetes, where the operator matches registry entries to pods by
    it; elsewhere hostname-pid, so two workers on one host keep entries of their own."""
    pod_name = os.environ.get("POD_NAME")
    if pod_name:
        return pod_name
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return socket.gethostname()  # a pod's hostname is its name
    return f"{socket.gethostname()}-{os.getpid()}"


class WorkerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    redis_url: str
    # The application's key prefix (--prefix, $CORRAL_PREFIX); None: the app's own
    # (App(prefix=...), default corral). See corral.app.resolve_prefix.
    prefix: str | None = None
    queues: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_QUEUES))
    concurrency: int = Field(
        defaults.CONCURRENCY.default, ge=defaults.CONCURRENCY.min, le=defaults.CONCURRENCY.max)
    batch_size: int = Field(
        defaults.BATCH_SIZE.default, ge=defaults.BATCH_SIZE.min, le=defaults.BATCH_SIZE.max)
    lease_s: float = Field(
        float(defaults.LEASE_S.default), ge=defaults.LEASE_S.min, le=defaults.LEASE_S.max)
    grace_s: float = Field(
        float(defaults.GRACE_S.default), ge=defaults.GRACE_S.min, le=defaults.GRACE_S.max)
    metrics_host: str = DEFAULT_METRICS_HOST
    # 0 picks a free port; None serves nothing.
    metrics_port: int | None = Field(defaults.METRICS_PORT, ge=0, le=65_535)
    worker_id: str = Field(default_factory=default_worker_id, min_length=1, max_length=253)
    # A safety net only: the heartbeat (every heartbeat_s) already wakes an idle queue
    # that has backlog, and a wake message or the next due time wakes it sooner.
    idle_poll_s: float = Field(30.0, gt=0.0, le=300.0)
    debug_endpoint: bool = True
    max_payload_bytes: int = Field(DEFAULT_MAX_PAYLOAD_BYTES, ge=1024)

    @field_validator("prefix")
    @classmethod
    def _check_prefix(cls, prefix: str | None) -> str | None:
        return None if prefix is None else validate_prefix(prefix)

    @field_validator("queues")
    @classmethod
    def _check_queues(cls, queues: dict[str, int]) -> dict[str, int]:
        if not queues:
            raise ValueError("at least one queue is needed")
        for name, weight in queues.items():
            validate_queue_name(name)
            if not 1 <= weight <= 100:
                raise ValueError(f"queue {name!r}: weight must be between 1 and 100")
        return queues

    @property
    def heartbeat_s(self) -> float:
        """Leases are renewed three times per lease, and at least every 5 s."""
        return min(self.lease_s / 3, 5.0)

    @property
    def registry_ttl_s(self) -> float:
        return self.heartbeat_s * 3

    @property
    def redis_timeout_s(self) -> float:
        """The deadline of each Redis call: a heartbeat later than that is no use."""
        return max(1.0, min(self.heartbeat_s, 5.0))


LogFormat = Literal["text", "json"]
