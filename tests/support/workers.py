"""Real worker subprocesses for the tests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_PORT = re.compile(r"worker http on http://[^:]+:(\d+)")


class WorkerProcess:
    """``corral worker`` in a subprocess; its stderr is collected in ``lines``."""

    def __init__(
        self,
        redis_url: str,
        app: str = "tests.apps.basic:app",
        args: Sequence[str] = (),
        worker_id: str | None = "test-worker",
    ) -> None:
        # No PYTHONPATH=ROOT: the root's operator/ folder would shadow the standard
        # library's `operator` at start-up. `corral worker` finds tests.* from its cwd.
        env = dict(os.environ, CORRAL_TEST_REDIS_URL=redis_url, PYTHONUNBUFFERED="1")
        self.command = [
            sys.executable, "-m", "corral", "worker", app, "--redis-url", redis_url,
            *(["--worker-id", worker_id] if worker_id else []), "--metrics-port", "0", *args,
        ]
        self.process = subprocess.Popen(
            self.command, cwd=ROOT, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
            text=True,
        )
        self.lines: list[str] = []
        self.metrics_port: int | None = None
        self._started = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))
            match = _PORT.search(line)
            if match:
                self.metrics_port = int(match.group(1))
            if " started: queues " in line:
                self._started.set()
        self._started.set()

    def wait_started(self, timeout_s: float = 20.0) -> WorkerProcess:
        if not self._started.wait(timeout_s) or self.process.poll() is not None:
            raise RuntimeError("worker did not start:\n" + self.output())
        return self

    def output(self) -> str:
        return "\n".join(self.lines[-50:])

    def terminate(self, timeout_s: float = 30.0) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.wait(timeout_s)

    def kill(self) -> None:
        self.process.kill()
        self.wait()

    def wait(self, timeout_s: float = 30.0) -> int:
        try:
            code = self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"worker still running after {timeout_s} s:\n{self.output()}"
            ) from None
        self._reader.join(5)
        if self.process.stderr is not None:
            self.process.stderr.close()
        return code

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.wait()
