"""Redis connections from URLs. The one place that knows how to build a client.

=================================================================  ===============================
``redis://[[user]:password@]host[:port][/db]``                      one server
``rediss://…``                                                      one server over TLS
``unix:///path/redis.sock?db=0``                                    a local socket
``redis+cluster://[[user]:password@]host:port[,host:port…]``        Redis Cluster, from seed nodes
``redis+sentinel://[[user]:password@]host:port[,…]/service[/db]``   the master of a Sentinel service
=================================================================  ===============================

``rediss+cluster://`` and ``rediss+sentinel://`` speak TLS to the data nodes. User and
password belong to the data nodes (an ACL user); the Sentinels' own credentials, if any,
go in the options. Options are query parameters, and unknown ones are refused:

* TLS: ``ssl_ca_certs`` (CA file), ``ssl_certfile`` and ``ssl_keyfile`` (client
  certificate), ``ssl_cert_reqs`` (``required``, ``optional`` or ``none``),
  ``ssl_check_hostname`` (``true``/``false``);
* ``socket_timeout``, ``socket_connect_timeout`` (seconds), ``client_name``;
  ``db`` (for ``unix://``);
* Sentinel only: ``sentinel_username``, ``sentinel_password``, ``sentinel_ssl``
  (``true`` when the Sentinels themselves speak TLS).

Over TLS the server's certificate is verified, chain and host name, unless the URL
says otherwise (``ssl_cert_reqs=none``, ``ssl_check_hostname=false``). The CA comes
from ``ssl_ca_certs``, else from ``$CORRAL_REDIS_CA_CERTS`` for the URL of
``$CORRAL_REDIS_URL`` (how worker pods get a TaskQueue's ``spec.redis.caSecretRef``),
else from ``connect(..., ca_data=...)``, else the system's CAs.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, cast
from urllib.parse import parse_qsl, quote, unquote

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, ClusterPubSub, RedisCluster
from redis.asyncio.sentinel import Sentinel

from corral._packing import faster_connection_class
from corral.errors import ConfigError

DEFAULT_REDIS_URL = "redis://localhost:6379/0"
_SINGLE_SCHEMES = ("redis", "rediss", "unix")
_SCHEMES = (*_SINGLE_SCHEMES, "redis+cluster", "rediss+cluster", "redis+sentinel",
            "rediss+sentinel")
_CONNECT_TIMEOUT_S = 5.0
_MAX_CONNECTIONS = 100
_POOL_WAIT_S = 30.0


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 < value < 86_400:
        raise ValueError("must be between 0 and 86400 seconds")
    return value


def _flag(text: str) -> bool:
    lowered = text.lower()
    if lowered not in ("true", "false", "yes", "no", "1", "0"):
        raise ValueError("must be true or false")
    return lowered in ("true", "yes", "1")


def _cert_reqs(text: str) -> str:
    if text not in ("required", "optional", "none"):
        raise ValueError("must be required, optional or none")
    return text


def _db(text: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise ValueError(f"the db index must be a non-negative integer, not {text!r}")
    return int(text)


_OPTIONS: dict[str, Callable[[str], Any]] = {
    "ssl_ca_certs": str,
    "ssl_certfile": str,
    "ssl_keyfile": str,
    "ssl_cert_reqs": _cert_reqs,
    "ssl_check_hostname": _flag,
    "socket_timeout": _seconds,
    "socket_connect_timeout": _seconds,
    "client_name": str,
    "db": _db,
}
_SENTINEL_OPTIONS: dict[str, Callable[[str], Any]] = {
    "sentinel_username": str,
    "sentinel_password": str,
    "sentinel_ssl": _flag,
}
_SECRET_OPTIONS = re.compile(r"((?:^|[?&])[^=&]*password=)[^&]*")


def default_url() -> str:
    """``$CORRAL_REDIS_URL`` (with ``$CORRAL_REDIS_CA_CERTS`` as its CA file), else
    redis://localhost:6379/0."""
    url = os.environ.get("CORRAL_REDIS_URL") or DEFAULT_REDIS_URL
    ca_file = os.environ.get("CORRAL_REDIS_CA_CERTS")
    return with_ca_file(url, ca_file) if ca_file else url


def with_ca_file(url: str, ca_file: str) -> str:
    """``url`` with ``ssl_ca_certs=ca_file``, unless it names a CA file of its own. On a
    URL without TLS the option makes ``parse_url`` refuse it, as it should."""
    _, _, query = url.partition("?")
    if any(name == "ssl_ca_certs" for name, _ in parse_qsl(query, keep_blank_values=True)):
        return url
    option = f"ssl_ca_certs={quote(ca_file, safe='/')}"
    return f"{url}&{option}" if query else f"{url.removesuffix('?')}?{option}"


def redact(url: str) -> str:
    """The URL with its passwords replaced, for logs and errors."""
    url = _SECRET_OPTIONS.sub(r"\1***", url)
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return url
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else f"{scheme}://{user}@{host}"


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """A parsed Redis URL."""

    kind: Literal["single", "cluster", "sentinel"]
    tls: bool
    nodes: tuple[tuple[str, int], ...] = ()
    username: str | None = None
    password: str | None = None
    db: int = 0
    service: str = ""
    options: dict[str, Any] = field(default_factory=dict)


def parse_url(url: str) -> RedisTarget:
    """Check a URL of any supported scheme; raises ConfigError naming what is wrong."""
    scheme, sep, rest = url.partition("://")
    expected = ", ".join(f"{s}://" for s in _SCHEMES)
    if not sep:
        # Not repeated: it may be any Secret value a TaskQueue named as its URL.
        raise ConfigError(f"not a Redis URL (no scheme://): expected one of {expected}")
    if scheme not in _SCHEMES:
        raise ConfigError(f"unsupported Redis URL scheme {scheme[:20]!r}: expected one of "
                          f"{expected}")
    try:
        return _parse(scheme, rest)
    except ValueError as exc:
        raise ConfigError(f"invalid Redis URL {redact(url)!r}: {exc}") from None


def _parse(scheme: str, rest: str) -> RedisTarget:
    kind = "single" if scheme in _SINGLE_SCHEMES else scheme.split("+", 1)[1]
    rest, _, query = rest.partition("?")
    allowed = _OPTIONS | (_SENTINEL_OPTIONS if kind == "sentinel" else {})
    options: dict[str, Any] = {}
    for name, value in parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)):
        if name not in allowed:
            raise ValueError(f"unknown option {name!r} (known: {', '.join(sorted(allowed))})")
        try:
            options[name] = allowed[name](value)
        except ValueError as exc:
            raise ValueError(f"option {name}: {exc}") from None
    tls = scheme.startswith("rediss")
    if not tls and any(name.startswith("ssl_") for name in options):
        raise ValueError("TLS options need a rediss:// URL")
    if kind == "single":
        db = _single_db(rest) if scheme != "unix" else options.get("db", 0)
        return RedisTarget("single", tls, db=db, options=options)
    netloc, _, path = rest.partition("/")
    username = password = None
    if "@" in netloc:
        creds, _, netloc = netloc.rpartition("@")
        user, has_password, secret = creds.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if has_password else None
    nodes = tuple(_host_port(part) for part in netloc.split(","))
    segments = [s for s in path.split("/") if s]
    if kind == "cluster":
        if segments not in ([], ["0"]) or options.get("db", 0) != 0:
            raise ValueError("Redis Cluster has only database 0")
        return RedisTarget("cluster", tls, nodes, username, password, 0, "", options)
    if not segments or len(segments) > 2:
        raise ValueError("a Sentinel URL names its service: redis+sentinel://host:port/service")
    db = _db(segments[1]) if len(segments) == 2 else options.pop("db", 0)
    return RedisTarget("sentinel", tls, nodes, username, password, db, segments[0], options)


def _single_db(rest: str) -> int:
    """The db index in ``host:port/db``; redis-py would read a bad one as db 0."""
    segments = [s for s in rest.partition("/")[2].split("/") if s]
    if len(segments) > 1:
        raise ValueError("expected redis://host:port/db")
    return _db(segments[0]) if segments else 0


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65_536:
        raise ValueError(f"expected host:port, not {text!r}")
    return host.strip("[]"), int(port)


def connect(url: str, *, max_connections: int | None = None,
            ca_data: str | None = None) -> Redis:
    """An asyncio client for ``url``. For ``redis+cluster://`` it is a RedisCluster,
    which serves every command Corral sends (each script touches one hash slot).
    ``ca_data``: PEM CA certificates to verify a ``rediss://`` server with, when the
    URL names no ``ssl_ca_certs``."""
    target = _with_tls_defaults(parse_url(url), ca_data, url)
    if target.kind == "cluster":
        return _cluster(target, max_connections)
    if target.kind == "sentinel":
        return _sentinel_master(target, max_connections)
    base, _, _ = url.partition("?")
    try:
        # Blocking: past max_connections, callers wait for a free connection instead of
        # failing (a client with hundreds of result() waiters, say).
        pool = BlockingConnectionPool.from_url(
            base,
            timeout=_POOL_WAIT_S,
            decode_responses=False,
            max_connections=max_connections or _MAX_CONNECTIONS,
            socket_connect_timeout=_CONNECT_TIMEOUT_S,
            socket_keepalive=True,
            **target.options,
        )
    except ValueError as exc:
        raise ConfigError(f"invalid Redis URL {redact(url)!r}: {exc}") from None
    pool.connection_class = faster_connection_class(pool.connection_class)
    # from_pool hands the pool to the client, so aclose() closes its connections too.
    return Redis.from_pool(pool)


def _with_tls_defaults(target: RedisTarget, ca_data: str | None, url: str) -> RedisTarget:
    """Verification on, whatever redis-py's defaults are, and the CA given."""
    if not target.tls:
        if ca_data is not None:
            raise ConfigError(f"a CA certificate needs a rediss:// URL, not {redact(url)!r}")
        return target
    options = dict(target.options)
    options.setdefault("ssl_cert_reqs", "required")
    options.setdefault("ssl_check_hostname", options["ssl_cert_reqs"] == "required")
    if ca_data is not None and "ssl_ca_certs" not in options:
        options["ssl_ca_data"] = ca_data
    return dataclasses.replace(target, options=options)


def is_cluster(redis: Redis) -> bool:
    """Whether ``redis`` is a Redis Cluster client (made from a ``redis+cluster://`` URL)."""
    return isinstance(cast(object, redis), RedisCluster)


def _common(target: RedisTarget) -> dict[str, Any]:
    options = dict(target.options)
    options.setdefault("socket_connect_timeout", _CONNECT_TIMEOUT_S)
    # Like the single-server client: no read timeout, so pub/sub can wait for messages.
    options.setdefault("socket_timeout", None)
    return {
        "username": target.username,
        "password": target.password,
        "decode_responses": False,
        "socket_keepalive": True,
        **options,
    }


class _ClusterPubSub(ClusterPubSub):
    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        # redis-py routes SUBSCRIBE by the slot table, which stays empty until the
        # client's first command; a subscriber that speaks first would fail.
        await self.cluster.initialize()
        return await super().execute_command(*args, **kwargs)


class _Cluster(RedisCluster):
    def pubsub(
        self,
        node: ClusterNode | None = None,
        host: str | None = None,
        port: int | None = None,
        **kwargs: Any,
    ) -> ClusterPubSub:
        return _ClusterPubSub(self, node=node, host=host, port=port, **kwargs)


def _cluster(target: RedisTarget, max_connections: int | None) -> Redis:
    cluster = _Cluster(
        startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
        ssl=target.tls,
        max_connections=max_connections or 100,  # per node, as redis-py's pools default to
        **_common(target),
    )
    # Typed as Redis for the rest of Corral: it sends only commands both clients serve.
    return cast(Redis, cluster)


class _SentinelMaster(Redis):
    """The master of a Sentinel service; closing it closes the Sentinel connections too."""

    sentinel_manager: Sentinel | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        if self.sentinel_manager is not None:
            for client in self.sentinel_manager.sentinels:
                await client.aclose()


def _sentinel_master(target: RedisTarget, max_connections: int | None) -> Redis:
    options = _common(target)
    sentinel_auth = {
        "username": options.pop("sentinel_username", None),
        "password": options.pop("sentinel_password", None),
        "ssl": options.pop("sentinel_ssl", False),
        "socket_connect_timeout": options["socket_connect_timeout"],
        "socket_keepalive": True,
    }
    if not sentinel_auth["ssl"]:
        sentinel_auth.pop("ssl")
    # redis-py's Sentinel constructor is untyped.
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        list(target.nodes), sentinel_kwargs=sentinel_auth
    )
    master = sentinel.master_for(
        target.service,
        redis_class=_SentinelMaster,
        db=target.db,
        ssl=target.tls,
        max_connections=max_connections,
        **options,
    )
    master.sentinel_manager = sentinel
    return cast(Redis, master)
