"""The operator at scale: ``bench/operator_scale.py`` at 100 and 1,000 TaskQueues
(``pollSeconds: 1``) and at 1,000 with the default ``pollSeconds``, its section of
docs/benchmarks.md and its plot (reaction and CPU against the number of
TaskQueues). Figures of the operator before the shared Redis reads, the wake-up
and the Deployment watch are kept in ``bench/baselines/operator_scale_before.json``
and shown next to the measured ones.

    python -m bench.scale_section --render RUN.json [RUN.json ...]

renders the section from saved runs into docs/benchmarks.md (and its plot into
docs/img) without measuring; ``bench/run`` measures and renders as part of a run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "operator_scale.py"
BEFORE = REPO / "bench" / "baselines" / "operator_scale_before.json"
HEADER = "## The operator at scale"
DEFAULT_POLL_S = 5
LONG_POLL_S = 60  # scale from zero by the wake-up alone: the poll is a minute away
# (TaskQueues, pollSeconds, extra flags) of a full run; a quick run measures the first.
CONFIGS: tuple[tuple[int, int, tuple[str, ...]], ...] = (
    (100, 1, ()), (1000, 1, ()), (1000, DEFAULT_POLL_S, ()),
    (1000, LONG_POLL_S, ("--kinds", "from_zero", "--settle-s", "20", "--steady-s", "30")),
)
TIMEOUT_S = 3600
GOALS = {"cpu_share": 0.25, "cpu_share_default_poll": 0.10, "rss_mib": 200.0,
         "reaction_p99_s": 1.0, "from_zero_p99_s": 0.2}

Run = Mapping[str, Any]


def run(out_dir: Path, quick: bool = False) -> dict[str, Any]:
    from bench.operator_section import control_plane_bin_dir
    from bench.venvs import import_root, venv_root

    bin_dir, reason = control_plane_bin_dir()
    if bin_dir is None:
        print(f"operator at scale: skipped ({reason})", flush=True)
        return {"status": "skipped", "reason": reason}
    runs, failures = [], []
    for taskqueues, poll_s, extra in CONFIGS[:1] if quick else CONFIGS:
        json_path = out_dir / f"operator-scale-{taskqueues}-{poll_s}s.json"
        argv = [str(venv_root() / "corral" / "bin" / "python"), str(SCRIPT),
                "--taskqueues", str(taskqueues), "--poll-seconds", str(poll_s),
                "--json", str(json_path), *extra]
        if quick:
            argv += ["--trials", "5", "--steady-s", "20", "--profile-s", "0"]
        print(f"operator at scale: {taskqueues} TaskQueues, pollSeconds {poll_s}", flush=True)
        env = {**os.environ, "CORRAL_K8S_BIN_DIR": str(bin_dir),
               "PYTHONPATH": str(import_root())}
        with open(out_dir / "logs" / f"operator_scale_{taskqueues}_{poll_s}.log", "ab") as log:
            try:
                proc = subprocess.run(argv, cwd=REPO, env=env, stdout=log,
                                      stderr=subprocess.STDOUT, timeout=TIMEOUT_S, check=False)
            except subprocess.TimeoutExpired:
                failures.append(f"{taskqueues}/{poll_s}s: no result within {TIMEOUT_S} s")
                continue
        if proc.returncode != 0 or not json_path.exists():
            failures.append(f"{taskqueues}/{poll_s}s: exit {proc.returncode}")
            continue
        runs.append(json.loads(json_path.read_text()))
    status = "measured" if runs else "failed"
    return {"status": status, "runs": runs, "failures": failures}


# -- the doc -------------------------------------------------------------------------------


def _baseline() -> dict[str, Any]:
    return dict(json.loads(BEFORE.read_text())) if BEFORE.exists() else {}


def _before() -> list[Run]:
    return list(_baseline().get("runs", []))


def _key(r: Run) -> tuple[int, int]:
    return int(r["taskqueues"]), int(r["poll_seconds"])


def _row(label: str, r: Run) -> str:
    s, t = r["steady"], r["trials"]
    per_poll = s.get("per_taskqueue_per_poll", {})
    return (f"| {label} | {r['taskqueues']:,} | {r['poll_seconds']} s | "
            f"{s['cpu_share']:.0%} | {s['rss_mib']:.0f} MiB | "
            f"{s['api_per_s'].get('GET', 0):.1f} / {s['api_writes_per_s']:.1f} | "
            f"{s['redis_all_per_s']:,.0f} ({s['redis_client_per_s']:,.0f}) | "
            f"{per_poll.get('all', 0):.2f} ({per_poll.get('client_issued', 0):.3f}) | "
            f"{_p(t, 'burst')} | {_p(t, 'scale_up')} | {_p(t, 'from_zero')} | "
            f"{r['load_average'][0]:.1f} |")


def _p(trials: Mapping[str, Any], kind: str) -> str:
    t = trials.get(kind)
    return f"{t['p50_s']:.2f} / {t['p99_s']:.2f} s" if t else "-"


def table(after: Sequence[Run], before: Sequence[Run]) -> str:
    lines = [
        "| operator | TaskQueues | pollSeconds | CPU (of a core) | RSS | API GET / writes per s "
        "| Redis commands/s (client-issued) | per TaskQueue per poll (client-issued) "
        "| 500 tasks into an idle queue -> replicas, p50 / p99 | 500 more with 1 replica "
        "(the poll) | 1st task -> 0 -> 1 | load average |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [_row(r.get("label") or "before", r) for r in sorted(before, key=_key)]
    lines += [_row("**now**", r) for r in sorted(after, key=_key)]
    return "\n".join(lines)


def goals(after: Sequence[Run]) -> str:
    """Each goal of the operator at scale, met or not, from the measured runs."""
    by = {_key(r): r for r in after}
    out = []

    def check(name: str, key: tuple[int, int], value: float | None, limit: float,
              unit: str) -> None:
        if value is None:
            out.append(f"- {name}: not measured in this run")
            return
        verdict = "met" if value <= limit else "**not met**"
        out.append(f"- {name}: {value:{unit}} against <= {limit:{unit}}: {verdict}")

    big, default = by.get((1000, 1)), by.get((1000, DEFAULT_POLL_S))
    check("CPU at 1,000 TaskQueues, pollSeconds 1", (1000, 1),
          big and big["steady"]["cpu_share"], GOALS["cpu_share"], ".0%")
    check("RSS at 1,000 TaskQueues", (1000, 1), big and big["steady"]["rss_mib"],
          GOALS["rss_mib"], ".0f")
    check("API writes per second in the steady state, 1,000 TaskQueues", (1000, 1),
          big and big["steady"]["api_writes_per_s"], 0.0, ".1f")
    check("reaction p99 (500 tasks into an idle queue), 1,000 TaskQueues", (1000, 1),
          big and big["trials"]["burst"]["p99_s"], GOALS["reaction_p99_s"], ".2f")
    check("reaction p99 by the poll (500 more with 1 replica), 1,000 TaskQueues", (1000, 1),
          big and big["trials"]["scale_up"]["p99_s"], GOALS["reaction_p99_s"], ".2f")
    check("scale from zero p99, 1,000 TaskQueues", (1000, 1),
          big and big["trials"]["from_zero"]["p99_s"], GOALS["from_zero_p99_s"], ".2f")
    check(f"CPU at 1,000 TaskQueues, pollSeconds {DEFAULT_POLL_S}", (1000, DEFAULT_POLL_S),
          default and default["steady"]["cpu_share"], GOALS["cpu_share_default_poll"], ".0%")
    long = by.get((1000, LONG_POLL_S))
    check(f"scale from zero p99 with pollSeconds {LONG_POLL_S}, 1,000 TaskQueues",
          (1000, LONG_POLL_S), long and long["trials"]["from_zero"]["p99_s"],
          GOALS["from_zero_p99_s"], ".2f")
    return "\n".join(out)


def _profile(r: Run | None, label: str) -> str:
    prof = (r or {}).get("profile") or {}
    own = [(name, share) for name, share in prof.get("self") or []
           if not name.startswith("_worker (")]
    if not own:
        return f"- {label}: no profile"
    top = "; ".join(f"`{name}` {share}%" for name, share in own[:8])
    return f"- {label} ({prof.get('samples', 0):,} samples): {top}"


def markdown(section: Mapping[str, Any] | None, image: str | None) -> str:
    if not section:
        return f"{HEADER}\n\nNot run (`--no-operator`)."
    if section.get("status") != "measured":
        return f"{HEADER}\n\n{str(section.get('status', 'skipped')).capitalize()}: " \
               f"{section.get('reason') or '; '.join(section.get('failures', []))}."
    after, before = list(section["runs"]), _before()
    by_after = {_key(r): r for r in after}
    parts = [
        HEADER,
        "One operator process, one Redis, N TaskQueues with one queue each, on the test "
        "control plane (etcd, kube-apiserver, controller-manager, scheduler and kwok on this "
        "machine), measured by `bench/operator_scale.py --taskqueues N [--poll-seconds S]`. "
        "Steady state: 60 s with every queue idle; CPU and RSS from `/proc` of the operator; "
        "API requests from the API server's own `apiserver_request_total` (GETs of every "
        "client; writes to the resources the operator writes: deployments, taskqueues, events, "
        "pods, kopfpeerings); Redis commands from "
        "`INFO commandstats`, everything and, in brackets, what clients sent (the rest runs "
        "inside the depth script). Then 20 trials of each: 500 tasks into the idle probe "
        "queue until its Deployment's replicas are patched; 500 more into the probe queue "
        "while it runs one replica (no wake-up is published for a non-empty queue: the "
        "poll's reaction); one task into the idle queue until replicas 0 -> 1. `before` is "
        "the operator of the previous release (a Redis client, a GET of the Deployment and a "
        "timer per TaskQueue, scaling from zero only on the poll); `main, a loop per "
        "TaskQueue` is this release before its one scheduler (a kopf daemon with a loop and "
        "a timer per TaskQueue, a LIST of the TaskQueue's pods on every pass). `now` runs "
        "the scale-from-zero trials on TaskQueues of their own (trial i on `tq-0000i`, idle "
        "since created), so none waits for a scale-down.",
        table(after, before),
        *_baseline().get("notes", []),
    ]
    parts.append("Round trips to Redis per second (redis-py sends one `SCRIPT EXISTS` before "
                 "each pipeline, so its count is the number of pipelines): " + "; ".join(
                     f"{label} {r['taskqueues']:,} TaskQueues at {r['poll_seconds']} s: "
                     f"{r['steady']['redis_by_command_per_s'].get('script|exists', 0):,.1f}"
                     for label, rs in (("before", before), ("now", after))
                     for r in sorted(rs, key=_key)) + ".")
    if image:
        parts.append(f"![Reaction and CPU against the number of TaskQueues]({image})")
    parts += ["Goals (1,000 TaskQueues on one process):", goals(after)]
    profiled = [r for r in sorted(before, key=_key) if (r.get("profile") or {}).get("self")]
    earlier = profiled[-1] if profiled else None
    parts += [
        "Where the operator's time goes, `pollSeconds: 1` (py-spy over 30 s of the steady "
        "state, own time of the hottest functions in % of all samples; an idle thread-pool "
        "thread that py-spy samples as running, `_worker (futures/thread.py)`, is left "
        "out):",
        "\n".join([
            _profile(earlier, f"before, {earlier['taskqueues']:,} TaskQueues" if earlier
                     else "before"),
            _profile(by_after.get((1000, 1)), "now, 1,000 TaskQueues")]),
        *_baseline().get("profile_notes", []),
    ]
    loads = sorted({r["load_average"][0] for r in after})
    cpus = after[0].get("cpus") if after else None
    if loads and cpus and loads[-1] < 2 * cpus:  # the benchmark's own control plane and Redis
        parts.append(
            f"The 1-minute load average during these runs was {loads[0]:.1f} to "
            f"{loads[-1]:.1f} on {cpus} cores: nothing but the benchmark ran.")
    elif loads:
        parts.append(
            f"The machine is shared: the 1-minute load average during these runs was "
            f"{loads[0]:.1f} to {loads[-1]:.1f} on {cpus or '?'} cores, so the "
            "times include waiting for a CPU.")
    return "\n\n".join(parts)


def plot(section: Mapping[str, Any] | None, out_dir: Path) -> Path | None:
    if not section or section.get("status") != "measured":
        return None
    from bench.plots import CORRAL_COLOR, _save, plt

    runs = [r for r in section["runs"] if r["poll_seconds"] == 1]
    before = [r for r in _before() if r["poll_seconds"] == 1]
    if not runs:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for series, style, label in ((before, "--", "before"), (runs, "-", "now")):
        series = sorted(series, key=_key)
        if not series:
            continue
        n = [r["taskqueues"] for r in series]
        color = "#888" if label == "before" else CORRAL_COLOR
        left.plot(n, [r["trials"]["burst"]["p99_s"] for r in series], style, marker="o",
                  color=color, label=f"{label}: 500 tasks into an idle queue, p99")
        polled = [r for r in series if "scale_up" in r["trials"]]
        left.plot([r["taskqueues"] for r in polled],
                  [r["trials"]["scale_up"]["p99_s"] for r in polled], style, marker="s",
                  color=color, alpha=0.6, label=f"{label}: by the poll, p99")
        right.plot(n, [100 * r["steady"]["cpu_share"] for r in series], style, marker="o",
                   color=color, label=label)
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("TaskQueues (pollSeconds 1)")
    left.set_ylabel("seconds to replicas patched (log)")
    left.legend(fontsize=7)
    left.grid(alpha=0.3)
    right.set_xscale("log")
    right.set_xlabel("TaskQueues (pollSeconds 1)")
    right.set_ylabel("operator CPU, % of a core (steady)")
    right.set_ylim(bottom=0)
    right.axhline(100 * GOALS["cpu_share"], color="#a00", linewidth=0.8, linestyle=":")
    right.legend(fontsize=7)
    right.grid(alpha=0.3)
    fig.suptitle("The operator at scale: one process, one Redis")
    return _save(fig, out_dir / "bench-operator-scale.png")


def splice(doc: str, section: str) -> str:
    """``doc`` with its operator-at-scale section replaced (or appended)."""
    pattern = re.compile(rf"^{re.escape(HEADER)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(doc):
        return pattern.sub(lambda _: section.strip() + "\n\n", doc).rstrip() + "\n"
    return doc.rstrip() + "\n\n" + section.strip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--render", type=Path, nargs="+", required=True, metavar="RUN_JSON")
    args = parser.parse_args(argv)
    section = {"status": "measured", "runs": [json.loads(p.read_text()) for p in args.render]}
    doc_path = REPO / "docs" / "benchmarks.md"
    image = plot(section, REPO / "docs" / "img")
    rel = os.path.relpath(image, doc_path.parent) if image else None
    doc_path.write_text(splice(doc_path.read_text(), markdown(section, rel)))
    print(f"wrote {doc_path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
