"""A command in a real pseudo-terminal: a detached tmux pane on a private tmux server."""

from __future__ import annotations

import itertools
import os
import shlex
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tests.support.workers import ROOT

_numbers = itertools.count()


class Terminal:
    """Runs ``argv`` in a ``width`` x ``height`` pane; ``exit_code`` once it has ended."""

    def __init__(self, argv: Sequence[str], width: int = 200, height: int = 40) -> None:
        self.socket = f"corral-test-{os.getpid()}-{next(_numbers)}"
        self._dir = tempfile.TemporaryDirectory(prefix="corral-terminal-")
        self._rc = Path(self._dir.name) / "rc"
        # textual takes COLUMNS/LINES over the terminal's size; the pane's own size counts.
        command = (f"env -u COLUMNS -u LINES {shlex.join(argv)}; "
                   f"echo $? > {shlex.quote(str(self._rc))}")
        started = self._tmux("new-session", "-d", "-x", str(width), "-y", str(height),
                             "-c", str(ROOT), "sh", "-c", command)
        if started.returncode != 0:
            raise RuntimeError(f"tmux did not start: {started.stderr}")

    def _tmux(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True,
                              text=True, timeout=30)

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p").stdout

    def send(self, *keys: str) -> None:
        self._tmux("send-keys", *keys)

    @property
    def exit_code(self) -> int | None:
        text = self._rc.read_text().strip() if self._rc.exists() else ""
        return int(text) if text else None

    def close(self) -> None:
        self._tmux("kill-server")
        self._dir.cleanup()
