"""Counting the commands that clients send, as Redis sees them, by connection.

MONITOR reports each command with the address of the connection that sent it, and a
command that a Lua script runs with ``lua`` in its place. So what is counted is every
command that came from a client connection, whatever its name, less this module's own:

    async with counting_commands(url) as counts:
        ...
    counts  # Counter of command names, filled in when the block ends
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import redis.asyncio

from bench.redisinfo import parse_monitor_line

END_MARKER = b"corral-test-monitor-end"


@contextlib.asynccontextmanager
async def counting_commands(url: str) -> AsyncIterator[Counter[str]]:
    """Counts the commands client connections send while the block runs. Every one sent
    before the block ends is counted: the count ends at a marker this module sends."""
    where = urlsplit(url)
    control = redis.asyncio.Redis.from_url(url)
    # A long limit: a line holds a whole command, a script's source included.
    reader, writer = await asyncio.open_connection(where.hostname, where.port, limit=1 << 24)
    counts: Counter[str] = Counter()
    try:
        own = str((await control.client_info())["addr"])
        writer.write(b"MONITOR\r\n")
        await writer.drain()
        if (ok := await reader.readline()) != b"+OK\r\n":
            raise RuntimeError(f"MONITOR refused: {ok!r}")
        reading = asyncio.create_task(_count(reader, own, counts))
        try:
            yield counts
            await control.echo(END_MARKER)
            await asyncio.wait_for(reading, 30)
        finally:
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reading
    finally:
        writer.close()
        await control.aclose()


async def _count(reader: asyncio.StreamReader, own: str, counts: Counter[str]) -> None:
    """Count MONITOR lines until ``own`` connection's end marker comes through."""
    while line := await reader.readline():
        parsed = parse_monitor_line(line.rstrip(b"\r\n"))
        if parsed is None:
            continue
        source, name, command = parsed
        if source == own:
            if END_MARKER in command:
                return
        elif source != "lua":
            counts[name] += 1
    raise RuntimeError("MONITOR connection closed before the end marker")
