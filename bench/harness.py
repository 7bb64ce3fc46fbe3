"""The benchmark engine behind ``bench/run``: Corral and its peers, on one private
Redis, step by step, interleaved run by run. Runs in the "corral" bench venv.

Each step of each system runs in its own processes with deadlines, so a broken
peer shows up as a failed cell in the table instead of stopping the run."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import redis

from bench import keda_section, operator_section, profile, record, report, scale_section, stats
from bench.procs import Producer, StepFailed, Workers
from bench.redisinfo import Monitor, calls_between, commandstats_calls, own_address
from bench.systems import SYSTEMS
from bench.venvs import REPO, import_root, venv_root
from corral.embedded import EmbeddedRedis

POLL_S = 0.02
STARTUP_CAP_S = 60.0  # how long workers may take to start up and settle
STEP_SLACK_S = 120.0  # producer deadline on top of the work it is expected to do


@dataclass(frozen=True)
class Plan:
    quick: bool
    runs: int
    systems: tuple[str, ...]
    noop_n: int
    io_n: int
    single_n: int
    bulk_n: int
    rate_per_s: float
    load_s: float
    drain_cap_s: float
    single_cap_s: float
    profile_n: int
    warmup: int = 10

    @classmethod
    def make(cls, quick: bool, runs: int | None, systems: tuple[str, ...]) -> Plan:
        if quick:
            return cls(True, runs or 1, systems, noop_n=2_000, io_n=1_000, single_n=300,
                       bulk_n=2_000, rate_per_s=500, load_s=3, drain_cap_s=15,
                       single_cap_s=5, profile_n=100_000)
        return cls(False, runs or 3, systems, noop_n=20_000, io_n=10_000, single_n=2_000,
                   bulk_n=20_000, rate_per_s=500, load_s=20, drain_cap_s=60,
                   single_cap_s=10, profile_n=300_000)


class Bench:
    def __init__(self, plan: Plan, out_dir: Path, server: EmbeddedRedis) -> None:
        self.plan = plan
        self.out_dir = out_dir
        self.logs = out_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        # On tmpfs where there is one: the harness reads these files every 20 ms.
        self.records = _records_dir(out_dir)
        self.server = server
        self.url = server.url
        self.conn = redis.Redis.from_url(server.url, single_connection_client=True)
        self._import_root = import_root()

    # -- plumbing --------------------------------------------------------------------------

    def bin_dir(self, system: str) -> Path:
        return venv_root() / system / "bin"

    def env(self, system: str, record_file: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
        env.update(
            BENCH_REDIS_URL=self.url,
            CORRAL_REDIS_URL=self.url,
            BENCH_RECORD_FILE=str(record_file),
            PYTHONPATH=str(self._import_root),
            PYTHONSAFEPATH="1",
            PYTHONUNBUFFERED="1",
            PATH=f"{self.bin_dir(system)}{os.pathsep}{env.get('PATH', '')}",
        )
        if SYSTEMS[system].forks_per_task:
            env["BENCH_RECORD_SYNC"] = "1"
        return env

    def fresh(self, label: str) -> Path:
        """Empty Redis, and a new record file for the step called ``label``."""
        self.conn.flushall()
        path = self.records / f"{label}.rec"
        path.unlink(missing_ok=True)
        return path

    def producer(self, system: str, label: str, rec: Path, *args: object) -> Producer:
        return Producer(self.bin_dir(system) / "python", [system, *map(str, args)],
                        self.env(system, rec), self.out_dir, self.logs / f"{label}.producer.log")

    def workers(self, system: str, profile_name: str, procs: int, label: str, rec: Path
                ) -> Workers:
        argvs = SYSTEMS[system].workers[profile_name](self.bin_dir(system), self.url, procs)
        return Workers(argvs, self.env(system, rec), self.out_dir, self.logs / f"{label}.log")

    # -- steps -----------------------------------------------------------------------------

    def drain(self, system: str, profile_name: str, kind: str, n: int, procs: int,
              label: str, monitor: bool = False) -> dict[str, Any]:
        """Pre-enqueue ``n`` tasks, start the workers, time how fast they drain."""
        rec = self.fresh(label)
        self.producer(system, label, rec, "fill", "--kind", kind, "--n", n).result(
            self.plan.drain_cap_s * 4 + STEP_SLACK_S)
        watcher = Monitor("127.0.0.1", self.server.port, own_address(self.conn)) if monitor \
            else None
        with self.paused(), self.workers(system, profile_name, procs, label, rec) as workers:
            # Every worker starts up against a paused Redis and waits at its first
            # write (every system's dequeue is one); all are let go at once.
            settled = workers.wait_idle(STARTUP_CAP_S)
            if record.count(str(rec)):
                raise StepFailed("tasks ran while Redis was paused")
            before = commandstats_calls(self.conn)
            self.unpause()
            cut_off_at = self._wait_for(rec, n, workers, self.plan.drain_cap_s)
            after = commandstats_calls(self.conn)
            done = record.count(str(rec))
            counts = watcher.stop(self.conn) if watcher else None
        drain = stats.drain_rate(record.read(str(rec)), n, cut_off_at, procs,
                                 SYSTEMS[system].forks_per_task)
        if drain.completed == 0:
            raise StepFailed(f"no task ran within {self.plan.drain_cap_s:.0f} s: "
                             f"{workers.log_tail()}")
        result: dict[str, Any] = {
            **asdict(drain), "partial": drain.partial,
            "rss_peak_mb": workers.peak_rss_bytes / 2**20,
            "commands_per_task": calls_between(before, after) / max(done, 1),
            "settled_s": settled,
        }
        if counts is not None:
            result.update(
                client_commands_per_task=counts.client / max(done, 1),
                script_commands_per_task=counts.script / max(done, 1),
                client_commands=dict(counts.by_command.most_common(12)),
                tasks_counted=done,
            )
        return result

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Redis holds every client's write commands until ``unpause()``."""
        self.conn.execute_command("CLIENT", "PAUSE", int(STARTUP_CAP_S * 2000), "WRITE")
        try:
            yield
        finally:
            self.unpause()

    def unpause(self) -> None:
        self.conn.execute_command("CLIENT", "UNPAUSE")

    def _wait_for(self, rec: Path, n: int, workers: Workers, cap_s: float) -> float:
        """Wait until ``n`` records exist or ``cap_s`` passes; returns when it stopped."""
        deadline = time.monotonic() + cap_s
        while record.count(str(rec)) < n and time.monotonic() < deadline:
            workers.check_alive()
            time.sleep(POLL_S)
        return time.monotonic()

    def enqueue(self, system: str, label: str) -> dict[str, Any]:
        rec = self.fresh(label)
        p = self.plan
        out = self.producer(system, label, rec, "enqueue", "--single", p.single_n, "--bulk",
                            p.bulk_n, "--max-s", p.single_cap_s).result(STEP_SLACK_S * 2)
        result: dict[str, Any] = {
            "single_per_s": out["single_n"] / out["single_s"],
            "single_n": out["single_n"],
            "bulk_api": out.get("bulk_api"),
            "bulk_per_s": out["bulk_n"] / out["bulk_s"] if "bulk_s" in out else None,
        }
        return result

    def latency(self, system: str, label: str) -> dict[str, Any]:
        """Enqueue at a fixed rate to an idle-but-ready worker; time enqueue to start."""
        rec = self.fresh(label)
        p = self.plan
        expected = int(p.rate_per_s * p.load_s)
        with self.workers(system, "latency", 1, label, rec) as workers:
            producer = self.producer(system, label, rec, "paced", "--rate", p.rate_per_s,
                                     "--duration-s", p.load_s, "--warmup", p.warmup)
            deadline = time.monotonic() + 60 + p.load_s * 3 + STEP_SLACK_S
            while producer.running() and time.monotonic() < deadline:
                try:
                    workers.check_alive()
                except StepFailed:
                    producer.kill()
                    raise
                time.sleep(POLL_S)
            out = producer.result(max(1.0, deadline - time.monotonic()))
            # Time to finish what is queued: ten seconds, or the load's length.
            self._wait_for(rec, expected + p.warmup, workers, max(10.0, p.load_s))
        records = [r for r in record.read(str(rec)) if r[0] >= 0]
        lat = stats.start_latency(records, expected)
        return {**asdict(lat), **{k: v for k, v in out.items() if k != "n"},
                "rss_peak_mb": workers.peak_rss_bytes / 2**20}


def _records_dir(out_dir: Path) -> Path:
    shm = Path("/dev/shm")
    path = shm / f"corral-bench-{out_dir.name}" if shm.is_dir() else out_dir / "records"
    path.mkdir(parents=True, exist_ok=True)
    return path


def run_step(name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    started = time.monotonic()
    try:
        result = fn()
    except StepFailed as exc:
        result = {"error": str(exc)}
    except Exception as exc:  # a peer's failure must not stop the run
        result = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    result["step_s"] = round(time.monotonic() - started, 1)
    status = f"error: {result['error'][:160]}" if "error" in result else _brief(result)
    print(f"  {name:<22} {status} ({result['step_s']} s)", flush=True)
    return result


def _brief(result: dict[str, Any]) -> str:
    if "per_s" in result:
        return f"{result['per_s']:,.0f}/s" + (" (cut off)" if result.get("partial") else "")
    if "p99_ms" in result:
        return f"p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms"
    if "single_per_s" in result:
        bulk = result.get("bulk_per_s")
        return f"single {result['single_per_s']:,.0f}/s" + (
            f", bulk {bulk:,.0f}/s" if bulk else "")
    return "ok"


def run_all(bench: Bench) -> dict[str, Any]:
    plan = bench.plan
    runs: list[dict[str, dict[str, Any]]] = []
    for r in range(plan.runs):
        print(f"run {r + 1} of {plan.runs}", flush=True)
        run: dict[str, dict[str, Any]] = {}
        for system in plan.systems:
            print(f" {SYSTEMS[system].label}", flush=True)
            run[system] = run_system(bench, system, f"{system}-r{r + 1}")
        runs.append(run)
    print("Redis commands per task (MONITOR pass, not timed)", flush=True)
    commands = {
        system: run_step(SYSTEMS[system].label, partial(
            bench.drain, system, "noop1", "noop", plan.noop_n, 1, f"{system}-commands",
            monitor=True))
        for system in plan.systems
    }
    return {"runs": runs, "commands": commands}


def run_system(bench: Bench, system: str, tag: str) -> dict[str, dict[str, Any]]:
    """One run of every step for one system."""
    plan = bench.plan
    return {
        "noop1": run_step("no-op, 1 process", partial(
            bench.drain, system, "noop1", "noop", plan.noop_n, 1, f"{tag}-noop1")),
        "noop4": run_step("no-op, 4 processes", partial(
            bench.drain, system, "noop4", "noop", plan.noop_n, 4, f"{tag}-noop4")),
        "io": run_step("I/O-bound, 1 process", partial(
            bench.drain, system, "io", "io", plan.io_n, 1, f"{tag}-io")),
        "enqueue": run_step("enqueue", partial(bench.enqueue, system, f"{tag}-enqueue")),
        "latency": run_step("latency", partial(bench.latency, system, f"{tag}-latency")),
    }


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run",
        description="Benchmark Corral against Celery, RQ, arq, SAQ, Dramatiq, taskiq and "
                    "streaQ on one private Redis; prints a table and writes "
                    "docs/benchmarks.md (full runs) or bench/results/<time>/ (all runs).")
    parser.add_argument("--quick", action="store_true",
                        help="few tasks and one run: a smoke check (does not touch docs/)")
    parser.add_argument("--systems", default=",".join(SYSTEMS),
                        help=f"comma-separated subset of {','.join(SYSTEMS)}")
    parser.add_argument("--runs", type=int, default=None,
                        help="runs per system (default 3, or 1 with --quick)")
    docs = parser.add_mutually_exclusive_group()
    docs.add_argument("--docs", dest="docs", action="store_true", default=None,
                      help="write docs/benchmarks.md and docs/img even for a quick run")
    docs.add_argument("--no-docs", dest="docs", action="store_false",
                      help="leave docs/ alone")
    parser.add_argument("--no-profile", action="store_true",
                        help="skip the profile taken when Corral misses a target")
    parser.add_argument("--no-operator", action="store_true",
                        help="skip the operator sections (reaction time, scale)")
    parser.add_argument("--from-results", type=Path, metavar="RESULTS_JSON",
                        help="measure nothing: render the table, doc and plots again from "
                             "a run's bench/results/<time>/results.json")
    args = parser.parse_args(argv)
    systems = tuple(s.strip() for s in args.systems.split(",") if s.strip())
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown or not systems:
        parser.error(f"unknown system(s) {','.join(unknown)}; choose from {','.join(SYSTEMS)}")
    if args.runs is not None and args.runs < 1:
        parser.error("--runs must be at least 1")
    args.systems = tuple(s for s in SYSTEMS if s in systems)  # Corral first, fixed order
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.from_results:
        return render_again(Path(os.environ.get("BENCH_CWD", ".")) / args.from_results,
                            args.docs)
    plan = Plan.make(args.quick, args.runs, args.systems)
    write_docs = args.docs if args.docs is not None else not plan.quick
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir = REPO / "bench" / "results" / stamp
    out_dir.mkdir(parents=True)
    results: dict[str, Any] = {"plan": asdict(plan), "started": stamp}
    with EmbeddedRedis() as server:
        bench = Bench(plan, out_dir, server)
        try:
            results.update(measure(bench, server, not args.no_profile))
        finally:
            if bench.records.is_relative_to("/dev/shm"):
                shutil.rmtree(bench.records, ignore_errors=True)
    results["operator"] = None if args.no_operator else operator_section.run(out_dir, plan.quick)
    results["karpenter"] = operator_section.karpenter_figures()
    results["keda"] = keda_section.figures()
    results["operator_scale"] = (None if args.no_operator
                                 else scale_section.run(out_dir, plan.quick))
    results["finished"] = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    (out_dir / "results.json").write_text(json.dumps(results, indent=1, default=str))
    summary = report.summarize(results)
    table = report.text_table(summary)
    print()
    print(table)
    (out_dir / "table.txt").write_text(table + "\n")
    _write_doc(results, summary, out_dir, write_docs)
    return 0


def render_again(path: Path, docs: bool | None) -> int:
    """The outputs of an earlier run, from its saved results (no measuring)."""
    results = json.loads(path.read_text())
    summary = report.summarize(results)
    print(report.text_table(summary))
    write_docs = docs if docs is not None else not results["plan"]["quick"]
    _write_doc(results, summary, path.parent, write_docs)
    return 0


def measure(bench: Bench, server: EmbeddedRedis, may_profile: bool) -> dict[str, Any]:
    """Every step of every system, the commands pass, and a profile if one is due."""
    plan = bench.plan
    server_info = bench.conn.info("server")
    results: dict[str, Any] = {
        "machine": report_machine(server_info, server.binary),
        "versions": versions(plan.systems),
    }
    print(f"bench: {len(plan.systems)} systems, {plan.runs} run(s), Redis "
          f"{server_info.get('redis_version')} on {server.url}; logs in {bench.out_dir}",
          flush=True)
    results.update(run_all(bench))
    results["profile"] = None
    if may_profile and "corral" in plan.systems and report.missed_targets(
            report.summarize(results)):
        print("Corral missed a target: profiling a no-op drain with py-spy", flush=True)
        results["profile"] = profile.profile_corral(bench, plan.profile_n)
    return results


def report_machine(server_info: dict[str, Any], binary: str) -> dict[str, Any]:
    from bench.machine import describe

    return describe(server_info, binary)


def versions(systems: tuple[str, ...]) -> dict[str, dict[str, str]]:
    from bench.machine import freeze

    out = {}
    for system in systems:
        frozen = freeze(venv_root() / system / "bin" / "python")
        out[system] = {p: frozen.get(p, "?") for p in SYSTEMS[system].packages}
    return out


# Sections of docs/benchmarks.md from other benchmarks (bench/soak.py, bench/admin_ops.py)
# follow this line; a new run of this harness keeps them as they are.
KEPT_MARKER = "<!-- Below: figures from other benchmark scripts, kept by bench/run. -->"


def kept_sections(path: Path) -> str:
    text = path.read_text() if path.exists() else ""
    return "\n" + text[text.index(KEPT_MARKER):] if KEPT_MARKER in text else ""


def _write_doc(results: dict[str, Any], summary: report.Summary, out_dir: Path,
               write_docs: bool) -> None:
    from bench import plots

    img_dir = (REPO / "docs" / "img") if write_docs else (out_dir / "img")
    images = plots.draw(summary, img_dir)
    scale_plot = scale_section.plot(results.get("operator_scale"), img_dir)
    if scale_plot is not None:
        images["operator_scale"] = scale_plot
    doc_path = (REPO / "docs" / "benchmarks.md") if write_docs else (out_dir / "benchmarks.md")
    rel_images = {k: os.path.relpath(v, doc_path.parent) for k, v in images.items()}
    doc_path.parent.mkdir(parents=True, exist_ok=True)
    doc_path.write_text(report.markdown(results, summary, rel_images)
                        + kept_sections(REPO / "docs" / "benchmarks.md"))
    if write_docs:
        shutil.copy(doc_path, out_dir / "benchmarks.md")
    print(f"\nwrote {doc_path.relative_to(REPO) if doc_path.is_relative_to(REPO) else doc_path}"
          f" and {len(images)} plots; raw results in {out_dir / 'results.json'}")


if __name__ == "__main__":
    sys.exit(main())
