"""The PNG plots of docs/benchmarks.md (matplotlib, no display needed)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench.report import Summary

CORRAL_COLOR = "#1f6f43"


def _bars(ax: plt.Axes, labels: Sequence[str], series: dict[str, list[float | None]],
          unit: str) -> None:
    width = 0.8 / len(series)
    missing: list[tuple[float, str]] = []
    for i, (name, values) in enumerate(series.items()):
        xs = [x + (i - (len(series) - 1) / 2) * width for x in range(len(labels))]
        heights = [v if v is not None and math.isfinite(v) and v > 0 else 0 for v in values]
        bars = ax.bar(xs, heights, width, label=name)
        for x, bar, value in zip(xs, bars, values, strict=True):
            if value is None or math.isinf(value):
                missing.append((x, "failed" if value is None else "never"))
                continue
            note = f"{value:,.0f}" if value >= 10 else f"{value:.2g}"
            ax.annotate(note, (x, bar.get_height()), ha="center", va="bottom", fontsize=6,
                        rotation=90, xytext=(0, 2), textcoords="offset points")
    ax.set_yscale("log")
    bottom = ax.get_ylim()[0]
    for x, note in missing:  # no bar to stand on: written up from the axis
        ax.annotate(note, (x, bottom), ha="center", va="bottom", fontsize=6, rotation=90,
                    xytext=(0, 2), textcoords="offset points", color="#a00")
    ax.set_xticks(range(len(labels)), labels)
    for tick in ax.get_xticklabels():
        if tick.get_text() == "Corral":
            tick.set_color(CORRAL_COLOR)
            tick.set_fontweight("bold")
    ax.set_ylabel(unit)
    ax.grid(axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=8)


def draw(summary: Summary, out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    labels = [row.label for row in summary.rows]

    def values(metric: str) -> list[float | None]:
        return [row.cells[metric].value for row in summary.rows]

    paths = {}
    fig, ax = plt.subplots(figsize=(10, 5))
    _bars(ax, labels, {"no-op, 1 process": values("noop1"),
                       "no-op, 4 processes": values("noop4"),
                       "I/O-bound (10 ms sleep), 1 process": values("io")},
          "tasks per second (log)")
    ax.set_title(f"Worker throughput (median of {summary.runs} run(s))")
    paths["throughput"] = _save(fig, out_dir / "bench-throughput.png")

    fig, ax = plt.subplots(figsize=(10, 5))
    _bars(ax, labels, {"p50": values("p50"), "p99": values("p99"), "max": values("max")},
          "enqueue-to-start latency, ms (log)")
    ax.set_title("Enqueue-to-start latency at a fixed offered load, idle-but-ready worker")
    paths["latency"] = _save(fig, out_dir / "bench-latency.png")

    fig, ax = plt.subplots(figsize=(10, 5))
    _bars(ax, labels, {"one call per task": values("single"), "bulk API": values("bulk")},
          "tasks enqueued per second (log)")
    ax.set_title("Enqueue throughput, one producer")
    paths["enqueue"] = _save(fig, out_dir / "bench-enqueue.png")
    return paths


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
