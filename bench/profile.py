"""Where a Corral worker spends its time draining no-op tasks: py-spy samples the
worker process, and the collapsed stacks are summed by function."""

from __future__ import annotations

import signal
import subprocess
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import record, stats
from bench.venvs import venv_root

if TYPE_CHECKING:
    from bench.harness import Bench

SAMPLE_RATE_HZ = 250
TOP = 15
HARNESS_FRAME = "_flush_forever ("  # bench/record.py's thread, not the worker's work
OUTER_SHARE = 99.0  # inclusive shares above this are the frames every sample has


def collapse(lines: list[str]) -> tuple[Counter[str], Counter[str], int]:
    """Self and inclusive sample counts by frame, from py-spy's raw (collapsed) output.
    Samples of the harness's own record-flushing thread are left out."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in lines:
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f]
        if not frames or any(f.startswith(HARNESS_FRAME) for f in frames):
            continue
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    return own, inclusive, total


def _frame(name: str) -> str:
    """``func (path/to/module.py)`` shortened to the last two path parts."""
    func, _, where = name.partition(" (")
    where = where.rstrip(")")
    parts = where.split("/")
    return f"{func} ({'/'.join(parts[-2:])})" if where else func


def summarize(lines: list[str]) -> dict[str, Any]:
    own, inclusive, total = collapse(lines)
    if not total:
        return {"samples": 0, "self": [], "inclusive": []}

    def top(counter: Counter[str]) -> list[tuple[str, float]]:
        shares = ((_frame(f), round(100 * c / total, 1)) for f, c in counter.most_common())
        return [s for s in shares if s[1] < OUTER_SHARE][:TOP]

    return {"samples": total, "self": top(own), "inclusive": top(inclusive)}


def profile_corral(bench: Bench, n: int) -> dict[str, Any]:
    out = bench.out_dir / "profile-corral.txt"
    label = "corral-profile"
    rec = bench.fresh(label)
    try:
        bench.producer("corral", label, rec, "fill", "--kind", "noop", "--n", n).result(600)
        with bench.workers("corral", "noop1", 1, label, rec) as workers:
            # Attach once tasks run, so start-up (imports) stays out of the profile.
            bench._wait_for(rec, 1, workers, 60.0)
            spy = _attach(workers.procs[0].pid, out, bench.logs / f"{label}.py-spy.log")
            cut_off_at = bench._wait_for(rec, n, workers, max(120.0, bench.plan.drain_cap_s))
            spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            try:
                spy.wait(60)
            except subprocess.TimeoutExpired:
                spy.kill()
        drain = stats.drain_rate(record.read(str(rec)), n, cut_off_at)
        lines = out.read_text().splitlines() if out.exists() else []
        summary = summarize(lines)
        if not summary["samples"]:
            tail = (bench.logs / f"{label}.py-spy.log").read_text(errors="replace")[-300:]
            return {"error": f"py-spy recorded nothing: {tail.strip()}"}
        return {**summary, "tool": "py-spy", "rate_hz": SAMPLE_RATE_HZ, "tasks": n,
                "per_s_while_sampled": drain.per_s, "raw": str(out)}
    except Exception as exc:  # the profile is an extra; its failure is reported, not raised
        return {"error": f"{type(exc).__name__}: {exc}"}


def _attach(pid: int, out: Path, log: Path) -> subprocess.Popen[bytes]:
    spy = venv_root() / "corral" / "bin" / "py-spy"
    with open(log, "ab") as log_file:
        proc = subprocess.Popen(
            [str(spy), "record", "--pid", str(pid), "--rate", str(SAMPLE_RATE_HZ),
             "--format", "raw", "--nolineno", "--output", str(out)],
            stdout=log_file, stderr=subprocess.STDOUT)
    return proc
