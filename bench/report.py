"""Pure rendering of benchmark results: the summary across runs, the text table,
the targets, and docs/benchmarks.md. No I/O here beyond string building."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.stats import median, paired_ratio
from bench.systems import SYSTEMS

TARGET_SPEEDUP = 10.0
TARGET_P99_MS = 5.0
TARGET_COMMANDS_PER_TASK = 0.2

Results = Mapping[str, Any]


@dataclass
class Cell:
    """One figure: the median over runs, Corral's advantage, and what went wrong."""

    value: float | None = None
    ratio: float | None = None  # how many times better Corral is (median of per-run ratios)
    partial: bool = False  # a run was cut off at its time limit
    error: str | None = None


@dataclass
class Row:
    system: str
    label: str
    cells: dict[str, Cell] = field(default_factory=dict)


@dataclass
class Summary:
    rows: list[Row]
    runs: int
    speedup_vs_best: float | None  # Corral no-op 1 process / best peer, median per run
    best_peer: str | None


# (key in the step result, step, higher is better)
METRICS: dict[str, tuple[str, str, bool]] = {
    "noop1": ("noop1", "per_s", True),
    "noop4": ("noop4", "per_s", True),
    "io": ("io", "per_s", True),
    "single": ("enqueue", "single_per_s", True),
    "bulk": ("enqueue", "bulk_per_s", True),
    "p50": ("latency", "p50_ms", False),
    "p99": ("latency", "p99_ms", False),
    "max": ("latency", "max_ms", False),
}


def _series(results: Results, system: str, step: str, key: str) -> list[float | None]:
    values: list[float | None] = []
    for run in results.get("runs", []):
        value = run.get(system, {}).get(step, {}).get(key)
        values.append(float(value) if isinstance(value, (int, float)) else None)
    return values


def _errors(results: Results, system: str, step: str) -> list[str]:
    return [run[system][step]["error"] for run in results.get("runs", [])
            if "error" in run.get(system, {}).get(step, {})]


def _cell(results: Results, system: str, metric: str) -> Cell:
    step, key, higher_is_better = METRICS[metric]
    ours = _series(results, "corral", step, key)
    theirs = _series(results, system, step, key)
    errors = _errors(results, system, step)
    partial = any(run.get(system, {}).get(step, {}).get("partial")
                  for run in results.get("runs", []))
    ratio = None if system == "corral" else paired_ratio(ours, theirs, higher_is_better)
    value = median(theirs)
    error = errors[0] if errors and value is None else None
    return Cell(value, ratio, partial, error)


def _rss_cell(results: Results, system: str) -> Cell:
    peaks: list[float | None] = []
    for noop, io in zip(_series(results, system, "noop1", "rss_peak_mb"),
                        _series(results, system, "io", "rss_peak_mb"), strict=True):
        present = [v for v in (noop, io) if v is not None]
        peaks.append(max(present) if present else None)
    return Cell(median(peaks))


def _command_cells(results: Results, system: str) -> dict[str, Cell]:
    counted = results.get("commands", {}).get(system, {})
    error = counted.get("error")
    return {
        "cmd_client": Cell(counted.get("client_commands_per_task"), error=error),
        "cmd_all": Cell(median(_series(results, system, "noop1", "commands_per_task"))),
    }


def summarize(results: Results) -> Summary:
    systems = [s for s in SYSTEMS if any(s in run for run in results.get("runs", []))]
    rows = []
    for system in systems:
        row = Row(system, SYSTEMS[system].label)
        for metric in METRICS:
            row.cells[metric] = _cell(results, system, metric)
        row.cells["rss"] = _rss_cell(results, system)
        row.cells.update(_command_cells(results, system))
        rows.append(row)
    speedup, best = _speedup_vs_best(results, systems)
    return Summary(rows, len(results.get("runs", [])), speedup, best)


def _speedup_vs_best(results: Results, systems: Sequence[str]
                     ) -> tuple[float | None, str | None]:
    """Corral's single-process no-op rate over the best peer's, run by run."""
    peers = [s for s in systems if s != "corral"]
    if "corral" not in systems or not peers:
        return None, None
    ratios: list[float | None] = []
    best_counts: dict[str, int] = {}
    for run in results.get("runs", []):
        ours = run.get("corral", {}).get("noop1", {}).get("per_s")
        rates = {p: run.get(p, {}).get("noop1", {}).get("per_s") for p in peers}
        present = {p: r for p, r in rates.items() if r}
        if not ours or not present:
            ratios.append(None)
            continue
        best = max(present, key=lambda p: present[p])
        best_counts[best] = best_counts.get(best, 0) + 1
        ratios.append(ours / present[best])
    best_peer = max(best_counts, key=lambda p: best_counts[p]) if best_counts else None
    return median(ratios), best_peer


def corral_row(summary: Summary) -> Row | None:
    return next((r for r in summary.rows if r.system == "corral"), None)


def targets(summary: Summary) -> list[tuple[str, str, bool | None]]:
    """(target, what was measured, met?) for the three targets of the issue."""
    row = corral_row(summary)
    if row is None:
        return []
    p99 = row.cells["p99"].value
    commands = row.cells["cmd_client"].value
    speedup = summary.speedup_vs_best
    best = SYSTEMS[summary.best_peer].label if summary.best_peer else "best peer"
    return [
        (f"no-op throughput, 1 process, >= {TARGET_SPEEDUP:g}x the best peer",
         "n/a" if speedup is None else f"{speedup:.1f}x {best}",
         None if speedup is None else speedup >= TARGET_SPEEDUP),
        (f"enqueue-to-start p99 < {TARGET_P99_MS:g} ms at the offered load",
         "n/a" if p99 is None else f"{p99:.2f} ms",
         None if p99 is None else p99 < TARGET_P99_MS),
        (f"<= {TARGET_COMMANDS_PER_TASK:g} Redis commands per task (batch size 100)",
         "n/a" if commands is None else f"{commands:.3f} client-issued",
         None if commands is None else commands <= TARGET_COMMANDS_PER_TASK),
    ]


def missed_targets(summary: Summary) -> list[str]:
    return [name for name, _, met in targets(summary) if met is False]


# -- formatting ---------------------------------------------------------------------------


def fmt_rate(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}"


def fmt_ms(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "never"
    if value >= 1000:
        return f"{value / 1000:,.1f} s"
    if value >= 10:
        return f"{value:.0f}"
    return f"{value:.2f}"


def fmt_ratio(ratio: float | None) -> str:
    if ratio is None:
        return ""
    if math.isinf(ratio):
        return " (inf x)"
    return f" ({ratio:.1f}x)" if ratio < 100 else f" ({ratio:,.0f}x)"


def _show(cell: Cell, fmt: Callable[[float], str], with_ratio: bool = True) -> str:
    if cell.value is None:
        return "failed" if cell.error else "-"
    text = fmt(cell.value) + ("*" if cell.partial else "")
    return text + (fmt_ratio(cell.ratio) if with_ratio else "")


COLUMNS: list[tuple[str, str, Callable[[float], str], bool]] = [
    # (header, metric, formatter, show ratio)
    ("no-op 1 proc /s", "noop1", fmt_rate, True),
    ("no-op 4 procs /s", "noop4", fmt_rate, True),
    ("I/O 1 proc /s", "io", fmt_rate, True),
    ("enqueue /s", "single", fmt_rate, True),
    ("bulk enqueue /s", "bulk", fmt_rate, True),
    ("p50 ms", "p50", fmt_ms, False),
    ("p99 ms", "p99", fmt_ms, True),
    ("max ms", "max", fmt_ms, False),
    ("cmds/task", "cmd_client", lambda v: f"{v:.2f}", False),
    ("incl. Lua", "cmd_all", lambda v: f"{v:.2f}", False),
    ("RSS MB", "rss", lambda v: f"{v:.0f}", False),
]


def table_rows(summary: Summary) -> tuple[list[str], list[list[str]]]:
    headers = ["system", *(c[0] for c in COLUMNS)]
    body = [[row.label, *(_show(row.cells[m], f, r) for _, m, f, r in COLUMNS)]
            for row in summary.rows]
    return headers, body


def text_table(summary: Summary) -> str:
    headers, body = table_rows(summary)
    widths = [max(len(line[i]) for line in [headers, *body]) for i in range(len(headers))]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w)
                       for i, (h, w) in enumerate(zip(headers, widths, strict=True)))]
    lines.append("  ".join("-" * w for w in widths))
    for line in body:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(line, widths, strict=True))))
    lines.append("")
    lines.append(f"Medians of {summary.runs} run(s). (Nx): Corral is N times better, the median "
                 "of the per-run ratios. * = cut off at the time limit.")
    lines.extend(f"  {name}: {measured} -> {_verdict(met)}"
                 for name, measured, met in targets(summary))
    return "\n".join(lines)


def markdown_table(summary: Summary) -> str:
    headers, body = table_rows(summary)
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(headers) - 1)) + "|"]
    lines += ["| " + " | ".join(line) + " |" for line in body]
    return "\n".join(lines)


def _verdict(met: bool | None) -> str:
    return {True: "met", False: "MISSED", None: "not measured"}[met]


def markdown(results: Results, summary: Summary, images: Mapping[str, str]) -> str:
    """docs/benchmarks.md."""
    from bench.doc import render

    return render(results, summary, images)
