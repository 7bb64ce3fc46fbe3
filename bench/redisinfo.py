"""Counting Redis commands.

``INFO commandstats`` and ``total_commands_processed`` count the commands a Lua
script or function runs (``redis.call``) as well as the ones clients send; the
harness checked this on the server it uses (an EVAL running 100 INCRs moves both
by 101). So two figures are kept apart:

* all commands, script-internal ones included: the ``commandstats`` delta over a
  timed drain, less the harness's own INFO;
* client-issued commands: from a separate drain watched with ``MONITOR``, which
  marks every command a script runs with ``[<db> lua]`` instead of the client's
  address. MONITOR slows Redis down, so no timing comes from that pass."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import redis

END_MARKER = b"bench-monitor-end"


def commandstats_calls(conn: redis.Redis) -> dict[str, int]:
    """Calls per command so far (one INFO call, which itself shows up next time)."""
    info = conn.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(stats["calls"]) for name, stats in info.items()}


def calls_between(before: dict[str, int], after: dict[str, int]) -> int:
    """Commands run between two snapshots, less the harness's one INFO between them."""
    delta = sum(after.values()) - sum(before.values())
    return max(0, delta - 1)


@dataclass
class MonitorCounts:
    client: int = 0
    script: int = 0
    by_command: Counter[str] = field(default_factory=Counter)  # client-issued, by name


def parse_monitor_line(line: bytes) -> tuple[str, str, bytes] | None:
    """``+1700000000.1 [0 127.0.0.1:5000] "GET" "k"`` -> ("127.0.0.1:5000", "get", rest);
    the source is "lua" for a command a script ran. None for other lines."""
    if not line.startswith(b"+") or b"] " not in line:
        return None
    head, _, command = line.partition(b"] ")
    _, _, source = head.rpartition(b" ")
    name = command.split(b" ", 1)[0].strip(b'"').lower().decode(errors="replace")
    return source.decode(errors="replace"), name, command


class Monitor:
    """Counts commands through MONITOR on a raw socket, leaving out those of the
    harness connection ``ignore_addr``; ``stop()`` returns once the end marker
    has come through, so every command sent before it is counted."""

    def __init__(self, host: str, port: int, ignore_addr: str) -> None:
        self.counts = MonitorCounts()
        self._ignore = ignore_addr
        self._sock = socket.create_connection((host, port))
        self._sock.sendall(b"MONITOR\r\n")
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        pending = b""
        while not self._done.is_set():
            chunk = self._sock.recv(1 << 20)
            if not chunk:
                break
            lines = (pending + chunk).split(b"\r\n")
            pending = lines.pop()
            for line in lines:
                if self._count(line):
                    self._done.set()
                    break

    def _count(self, line: bytes) -> bool:
        """Count one MONITOR line; True at the end marker."""
        parsed = parse_monitor_line(line)
        if parsed is None:
            return False
        source, name, command = parsed
        if source == self._ignore:
            return END_MARKER in command
        if source == "lua":
            self.counts.script += 1
        else:
            self.counts.client += 1
            self.counts.by_command[name] += 1
        return False

    def stop(self, conn: redis.Redis, timeout_s: float = 60.0) -> MonitorCounts:
        conn.echo(END_MARKER)
        self._done.wait(timeout_s)
        self._done.set()
        self._sock.close()
        self._thread.join(5)
        return self.counts


def own_address(conn: redis.Redis) -> str:
    info = conn.client_info()
    return str(info["addr"])


def wait_for_server(conn: redis.Redis, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            conn.ping()
            return
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
