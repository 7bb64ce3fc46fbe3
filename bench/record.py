"""What a benchmark task writes when it runs: one fixed-size record per task,
appended to the file named by ``$BENCH_RECORD_FILE``.

A record is ``(enqueued_at, started_at, finished_at, pid, ppid)``; the times are
``time.monotonic()``, one system-wide clock on Linux, so the producer's and the
workers' timestamps compare directly. Records are buffered in the process and a
background thread appends them every 20 ms in one ``O_APPEND`` write,
which keeps the cost to a task well under a microsecond (a write per task would
cost a fast system like Corral several percent). Appends do not interleave, so
every worker process shares one file. Systems that fork a process per task set
``$BENCH_RECORD_SYNC`` and write each record at once, because their job process
ends with ``os._exit``. This module imports only the standard library: it runs
in every peer's venv."""

from __future__ import annotations

import atexit
import collections
import os
import struct
import threading
import time

RECORD = struct.Struct("<dddII")
WARMUP = -1.0  # enqueued_at of warm-up tasks, which the results leave out
FLUSH_S = 0.02

Record = tuple[float, float, float, int, int]

_fd: int | None = None
_pid = 0
_ppid = 0
_sync = bool(os.environ.get("BENCH_RECORD_SYNC"))
_pending: collections.deque[bytes] = collections.deque()  # appends are thread-safe


def _forget() -> None:
    # A forked child (prefork pools, RQ's work horse) opens its own descriptor and,
    # having no threads, starts its own flusher.
    global _fd
    _fd = None
    _pending.clear()


os.register_at_fork(after_in_child=_forget)


def _open() -> int:
    global _fd, _pid, _ppid
    _fd = os.open(os.environ["BENCH_RECORD_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    _pid, _ppid = os.getpid(), os.getppid()
    if not _sync:
        threading.Thread(target=_flush_forever, args=(_fd,), daemon=True,
                         name="bench-record").start()
    return _fd


def _flush(fd: int) -> None:
    count = len(_pending)
    if count:
        os.write(fd, b"".join(_pending.popleft() for _ in range(count)))


def _flush_forever(fd: int) -> None:
    while _fd == fd:
        time.sleep(FLUSH_S)
        _flush(fd)


@atexit.register
def _flush_at_exit() -> None:
    if _fd is not None:
        _flush(_fd)


def write(enqueued_at: float, started_at: float) -> None:
    """Record one task that started at ``started_at`` and finishes now."""
    fd = _fd if _fd is not None else _open()
    data = RECORD.pack(enqueued_at, started_at, time.monotonic(), _pid, _ppid)
    if _sync:
        os.write(fd, data)
    else:
        _pending.append(data)


def count(path: str) -> int:
    try:
        return os.stat(path).st_size // RECORD.size
    except FileNotFoundError:
        return 0


def read(path: str) -> list[Record]:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    usable = len(data) - len(data) % RECORD.size
    return [RECORD.unpack_from(data, i) for i in range(0, usable, RECORD.size)]
