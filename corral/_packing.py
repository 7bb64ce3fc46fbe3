"""Faster request packing for redis-py's asyncio connections.

redis-py's asyncio ``pack_command`` builds each request in Python, joining the
buffer again for every argument; a claim or finish script call with hundreds of
arguments spent milliseconds there (the worker's largest cost when profiled).
hiredis, already a dependency for reply parsing, packs the same request in C.
"""

from __future__ import annotations

from typing import Any

import hiredis
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.exceptions import DataError


class _HiredisPacking:
    def pack_command(self, *args: Any) -> list[bytes]:
        first = args[0]
        if isinstance(first, str) and " " in first:
            args = (*first.encode().split(), *args[1:])
        elif isinstance(first, bytes) and b" " in first:
            args = (*first.split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError as exc:
            raise DataError(str(exc)) from None


class FastConnection(_HiredisPacking, Connection):
    pass


class FastSSLConnection(_HiredisPacking, SSLConnection):
    pass


class FastUnixConnection(_HiredisPacking, UnixDomainSocketConnection):
    pass


_FASTER: dict[type[Any], type[Any]] = {
    Connection: FastConnection,
    SSLConnection: FastSSLConnection,
    UnixDomainSocketConnection: FastUnixConnection,
}


def faster_connection_class(connection_class: type[Any]) -> type[Any]:
    """The hiredis-packing twin of one of redis-py's connection classes (others as they are)."""
    return _FASTER.get(connection_class, connection_class)
