"""``corral`` with tracemalloc on, for bench/operator_scale.py ``--tracemalloc``: on
SIGUSR2 the live allocations, by file and by line, go to $CORRAL_TRACEMALLOC_OUT as
JSON. Tracing slows the process down: its CPU figures are not comparable."""

from __future__ import annotations

import json
import os
import signal
import tracemalloc
from types import FrameType

TOP = 25


def dump(_signum: int, _frame: FrameType | None) -> None:
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)])
    by_file = snapshot.statistics("filename")
    by_line = snapshot.statistics("lineno")
    out = {
        "traced_mib": round(sum(s.size for s in by_file) / 2**20, 1),
        "by_file": [[str(s.traceback), round(s.size / 2**20, 2), s.count] for s in by_file[:TOP]],
        "by_line": [[str(s.traceback), round(s.size / 2**20, 2), s.count] for s in by_line[:TOP]],
    }
    with open(os.environ["CORRAL_TRACEMALLOC_OUT"], "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    tracemalloc.start()
    signal.signal(signal.SIGUSR2, dump)
    from corral.cli import main

    main()
