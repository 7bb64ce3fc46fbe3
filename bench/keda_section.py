"""The "Corral vs KEDA" section of docs/benchmarks.md, from the figures of
``bench/keda_side_by_side.py --json bench/keda.json`` (kept in the repository: that
run needs KEDA built from source, a control plane of its own and about half an hour,
so ``bench/run`` reads the last figures instead of measuring)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from bench.venvs import REPO

FIGURES = REPO / "bench" / "keda.json"
COMMAND = "`python bench/keda_side_by_side.py --json bench/keda.json`"
HEADER = "## Corral vs KEDA: the same queue, load and control plane"
LABELS = {"corral-default": "Corral TaskQueue, defaults",
          "corral-tuned": "Corral TaskQueue, tuned",
          "keda-default": "KEDA ScaledObject + HPA, defaults",
          "keda-tuned": "KEDA ScaledObject + HPA, tuned"}


def figures() -> dict[str, Any] | None:
    if not FIGURES.exists():
        return None
    data: dict[str, Any] = json.loads(FIGURES.read_text())
    return data


def _seconds(row: Mapping[str, Any], key: str) -> str:
    median_s, max_s, missed = row.get(key), row.get(f"{key}_max"), row.get(f"{key}_missed", 0)
    if median_s is None:
        return "not reached" if missed else "n/a"
    text = f"{median_s:.1f} / {max_s:.1f} s"
    return f"{text} ({missed} not reached)" if missed else text


def _steady(row: Mapping[str, Any]) -> str:
    runs = row.get("steady") or []
    if not runs:
        return "n/a"
    run = runs[0]
    return f"{run['changes']} ({run['min_replicas']} to {run['max_replicas']} replicas)"


def _drop(row: Mapping[str, Any]) -> tuple[str, str]:
    runs = row.get("drop") or []
    if not runs:
        return "n/a", "n/a"
    run = runs[0]
    stopped = run.get("workers_stopped")
    interrupted = str(run["interrupted"]) + ("" if stopped is None else f" ({stopped})")
    if run.get("unfinished"):
        interrupted += f", {run['unfinished']} never finished"
    return interrupted, f"{run['lowest_replicas']} (then {run['replicas_after_hold']})"


def _row(name: str, row: Mapping[str, Any] | None) -> str:
    if row is None:
        return f"| {LABELS.get(name, name)} | | not measured | | | | |"
    interrupted, lowest = _drop(row)
    return (f"| {LABELS.get(name, name)} | {row['settings']} | "
            f"{_seconds(row, 'from_zero_s')} | {_seconds(row, 'reaction_s')} | "
            f"{_steady(row)} | {interrupted} | {lowest} |")


def markdown(data: Mapping[str, Any] | None) -> str:
    if not data:
        return f"{HEADER}\n\nNot measured: run {COMMAND}."
    rows = data["scalers"]
    trials = max((len(r.get("burst", [])) for r in data.get("raw", {}).values()), default=0)
    return "\n".join([
        HEADER, "",
        f"Measured by {COMMAND} ({data.get('measured', 'date not recorded')}). The "
        f"benchmark runs KEDA {data.get('keda_version', '')} (operator and metrics adapter "
        "built from its Go module by `scripts/k8s/build-keda`, its adapter registered as the "
        "`v1beta1.external.metrics.k8s.io` APIService through the API server's aggregation "
        "layer) next to the Corral operator, on one test control plane, one Redis, the same "
        "worker pods (kwok pods, each followed by a real `corral worker` process: one task at "
        "a time, SIGTERM on scale-down with a 2 s grace) and the same load. Both aim at 2 "
        "tasks per replica, at most 6 replicas, down to zero. KEDA's trigger is its `redis` "
        "list-length scaler on the queue's default-priority ready list "
        "(`corral:{Q}:ready:0`); the controller-manager's HPA sync period is "
        f"{data.get('hpa_sync_period', '15s')} (Kubernetes' default; on managed clusters it "
        "cannot be changed). *Tuned* is what a user sets on the object itself.",
        "",
        f"- **scale from zero / reaction**: 36 tasks into an idle queue, until the worker "
        f"Deployment's replicas are patched to 1 and to 6 (median / slowest of {trials} "
        "trials, each at a random phase of the poll);",
        "- **flapping**: 3 one-second tasks per second (3 workers' worth) after a 40 s warm-up: "
        "replica changes over the next 60 s;",
        "- **long tasks on a load drop**: 4 long tasks and 32 short ones; once the short ones "
        "are done the long ones run on for 30 s: tasks interrupted (from the tasks' own "
        "start/finish records; in brackets, the workers a scale-down stopped meanwhile: an "
        "interruption with none stopped had another cause; *never finished*: not done 120 s "
        "after the long tasks were let go) and the lowest replica count.",
        "",
        "| scaler | settings | scale from zero | reaction (to 6 replicas) "
        "| replica changes, steady load | long tasks interrupted (workers stopped) "
        "| lowest replicas (after 30 s) |",
        "|---|---|---:|---:|---:|---:|---:|",
        *(_row(name, rows.get(name)) for name in [*LABELS, *(n for n in rows if n not in LABELS)]),
        "",
        "What the two scalers count: KEDA's `redis` list-length scaler reads the length of "
        "one list, so tasks already taken by a worker (leased), delayed or at another "
        "priority do not count; once the waiting tasks are taken it asks for zero replicas "
        "while workers may still be running tasks, and only the HPA's scale-down window (300 "
        "s by default) and `cooldownPeriod` keep those pods. A TaskQueue counts waiting plus "
        "running tasks and holds a scale-down at the number of pods whose worker has a task in "
        "flight (`maxDrainSeconds`). KEDA activates a Deployment from zero on its "
        "`pollingInterval`; above one replica the HPA decides, on its own sync period. "
        "Corral's operator scales from zero on the wake-up producers publish, whatever "
        "`pollSeconds` is.",
        *([] if not any(run.get("unfinished") for r in rows.values()
                        for run in r.get("drop") or []) else [
            "",
            "Where tasks *never finished*, the scaler had taken the Deployment to zero while "
            "they ran: cut off with no worker left, they wait in the leased set until their "
            "leases run out, where a list-length trigger does not look, so nothing scales the "
            "Deployment up again to run them. A TaskQueue counts leased tasks as load, so its "
            "operator keeps a worker to take them back."]),
        *([] if not any(n.startswith("keda") and not r.get("steady")
                        for n, r in rows.items()) else ["", "*n/a*: not measured yet."]),
        *([] if not data.get("runs") else [
            "", "The figures come from "
            + "; ".join(f"`{r}`" for r in data["runs"]) + "."]),
        *([] if any(n.startswith("keda") for n in rows) else [
            "",
            "The KEDA rows are not measured yet: they need `scripts/k8s/build-keda` (KEDA "
            "v2.21.0 is about 3,100 Go packages beyond the standard library, every scaler's "
            "client libraries included: a long compile on a small machine), then the command "
            "above."]),
    ])
