"""Worker and producer processes for the harness: start them in their own process
groups, sample their memory, stop them, and never wait on them without a deadline."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil

STOP_GRACE_S = 10.0
RSS_SAMPLE_S = 0.1


class StepFailed(Exception):
    """One benchmark step of one system failed; the table shows the reason."""


class Workers:
    """A set of worker processes (each with its children) started from argv lists."""

    def __init__(self, argvs: Sequence[Sequence[str]], env: dict[str, str], cwd: Path,
                 log_path: Path) -> None:
        self.argvs = argvs
        self.env = env
        self.cwd = cwd
        self.log_path = log_path
        self.procs: list[subprocess.Popen[bytes]] = []
        self.peak_rss_bytes = 0
        self._sampling = threading.Event()
        self._sampler: threading.Thread | None = None

    def start(self) -> Workers:
        with open(self.log_path, "ab") as log:
            for argv in self.argvs:
                # A session of its own: stopping the group reaches forked children too.
                self.procs.append(subprocess.Popen(
                    list(argv), cwd=self.cwd, env=self.env, stdout=log,
                    stderr=subprocess.STDOUT, start_new_session=True))
        self._sampling.set()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()
        return self

    def _sample(self) -> None:
        while self._sampling.is_set():
            self.peak_rss_bytes = max(self.peak_rss_bytes, self.rss_bytes())
            time.sleep(RSS_SAMPLE_S)

    def rss_bytes(self) -> int:
        """Resident memory of every process of the group (workers and their children)."""
        total = 0
        for proc in self.procs:
            with contextlib.suppress(psutil.Error):
                root = psutil.Process(proc.pid)
                for p in [root, *root.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        total += p.memory_info().rss
        return total

    def cpu_s(self) -> float:
        """CPU time used so far by every process of the group."""
        total = 0.0
        for proc in self.procs:
            with contextlib.suppress(psutil.Error):
                root = psutil.Process(proc.pid)
                for p in [root, *root.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        times = p.cpu_times()
                        total += times.user + times.system
        return total

    def wait_idle(self, cap_s: float, quiet_s: float = 0.5, busy_share: float = 0.05,
                  min_s: float = 1.0) -> float:
        """Wait until the workers have started up and gone quiet: two intervals of
        ``quiet_s`` in a row using under ``busy_share`` of one CPU. Returns the wait."""
        started = time.monotonic()
        last = self.cpu_s()
        quiet = 0
        while time.monotonic() - started < cap_s:
            time.sleep(quiet_s)
            self.check_alive()
            now = self.cpu_s()
            quiet = quiet + 1 if now - last < busy_share * quiet_s else 0
            last = now
            if quiet >= 2 and time.monotonic() - started >= min_s:
                break
        return time.monotonic() - started

    def check_alive(self) -> None:
        for proc in self.procs:
            code = proc.poll()
            if code is not None:
                raise StepFailed(f"worker exited with code {code}: {self.log_tail()}")

    def log_tail(self, lines: int = 6) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return " | ".join(line.strip() for line in text.splitlines()[-lines:] if line.strip())

    def stop(self) -> None:
        self._sampling.clear()
        for proc in self.procs:
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.1, deadline - time.monotonic()))
        for proc in self.procs:
            # Whatever is left of the group (a stuck worker, an orphaned child) goes now.
            _signal_group(proc, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        if self._sampler is not None:
            self._sampler.join(1.0)

    def __enter__(self) -> Workers:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


class Producer:
    """``python -m bench.produce ...`` in a system's venv, run in the background."""

    def __init__(self, python: Path, args: Sequence[str], env: dict[str, str], cwd: Path,
                 log_path: Path) -> None:
        self._log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in result()
        self.proc = subprocess.Popen(
            [str(python), "-m", "bench.produce", *args], cwd=cwd, env=env,
            stdout=subprocess.PIPE, stderr=self._log, start_new_session=True)

    def result(self, timeout_s: float) -> dict[str, Any]:
        try:
            out, _ = self.proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _signal_group(self.proc, signal.SIGKILL)
            self.proc.communicate()
            raise StepFailed(f"producer did not finish within {timeout_s:.0f} s") from None
        finally:
            self._log.close()
        if self.proc.returncode != 0:
            tail = self._log_path.read_text(errors="replace").strip().splitlines()[-3:]
            raise StepFailed(f"producer failed ({self.proc.returncode}): {' | '.join(tail)}")
        lines = out.decode().strip().splitlines()
        try:
            result: dict[str, Any] = json.loads(lines[-1])
        except (IndexError, ValueError):
            raise StepFailed(f"producer printed no result: {out[-200:]!r}") from None
        return result

    def running(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        _signal_group(self.proc, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        self._log.close()
