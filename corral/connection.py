"""Redis connections from URLs: redis://, rediss:// (TLS), unix://, with user,
password and db index. The one place that knows how to build a client."""

from __future__ import annotations

import os

from redis.asyncio import ConnectionPool, Redis

from corral._packing import faster_connection_class
from corral.errors import ConfigError

DEFAULT_REDIS_URL = "redis://localhost:6379/0"
_SCHEMES = ("redis://", "rediss://", "unix://")


def default_url() -> str:
    return os.environ.get("CORRAL_REDIS_URL") or DEFAULT_REDIS_URL


def redact(url: str) -> str:
    """The URL with its password replaced, for logs and errors."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else f"{scheme}://{user}@{host}"


def connect(url: str, *, max_connections: int | None = None) -> Redis:
    if not url.startswith(_SCHEMES):
        raise ConfigError(
            f"unsupported Redis URL {redact(url)!r}: expected redis://, rediss:// or unix://"
        )
    try:
        pool = ConnectionPool.from_url(
            url,
            decode_responses=False,
            max_connections=max_connections,
            socket_connect_timeout=5.0,
            socket_keepalive=True,
        )
    except ValueError as exc:
        raise ConfigError(f"invalid Redis URL {redact(url)!r}: {exc}") from None
    pool.connection_class = faster_connection_class(pool.connection_class)
    return Redis(connection_pool=pool)
