"""The benchmark harness's pure parts: statistics, ratios, parsing and rendering.
(The benchmark itself is run by bench/run, never by the tests.)"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from bench import report, stats
from bench.doc import render
from bench.profile import collapse, summarize
from bench.redisinfo import calls_between, parse_monitor_line
from bench.venvs import parse_requirements


def test_median_ignores_missing_values() -> None:
    assert stats.median([3.0, None, 1.0, 2.0]) == 2.0
    assert stats.median([4.0, 1.0]) == 2.5
    assert stats.median([None, None]) is None


def test_percentile_interpolates_and_keeps_never_started_tasks_last() -> None:
    values = [float(v) for v in range(1, 101)]
    assert stats.percentile(values, 50) == pytest.approx(50.5)
    assert stats.percentile(values, 99) == pytest.approx(99.01)
    assert stats.percentile(values, 100) == 100.0
    assert stats.percentile([1.0, math.inf], 100) == math.inf
    assert math.isinf(stats.percentile([1.0, 2.0, math.inf, math.inf], 99))
    with pytest.raises(ValueError):
        stats.percentile([], 50)


def rec(start: float, finish: float, pid: int = 1, ppid: int = 0) -> stats.Record:
    return (0.0, start, finish, pid, ppid)


def test_drain_rate_of_one_process_runs_from_first_start_to_last_finish() -> None:
    drain = stats.drain_rate([rec(10.0, 10.5), rec(10.5, 11.0), rec(11.0, 12.0)], 3)
    assert drain.elapsed_s == pytest.approx(2.0)
    assert drain.per_s == pytest.approx(1.5)
    assert not drain.partial


def test_drain_rate_of_several_processes_starts_when_all_of_them_run() -> None:
    # Process 1 starts at 0 and runs 10 tasks alone; process 2 joins at 10.
    early = [rec(float(i), float(i) + 1, pid=1) for i in range(10)]
    both = [rec(10.0 + i / 2, 10.5 + i / 2, pid=2 - i % 2) for i in range(20)]
    drain = stats.drain_rate(early + both, 30, processes=2)
    assert drain.processes_seen == 2
    assert drain.elapsed_s == pytest.approx(10.0)  # from 10.0 to the last finish, 20.0
    assert drain.window_tasks == 21  # the 20, and the one process 1 finished at 10.0


def test_drain_rate_falls_back_to_the_whole_drain_when_a_process_never_ran() -> None:
    drain = stats.drain_rate([rec(0.0, 1.0), rec(1.0, 2.0)], 2, processes=4)
    assert drain.processes_seen == 1
    assert drain.elapsed_s == pytest.approx(2.0)


def test_drain_rate_counts_forked_job_processes_by_their_parent() -> None:
    records = [rec(float(i), float(i) + 1, pid=100 + i, ppid=7) for i in range(4)]
    assert stats.drain_rate(records, 4, by_parent=True).processes_seen == 1
    assert stats.drain_rate(records, 4).processes_seen == 4


def test_a_cut_off_drain_is_partial_and_ends_at_the_cut_off() -> None:
    drain = stats.drain_rate([rec(0.0, 1.0), rec(1.0, 2.0)], 10, cut_off_at=4.0)
    assert drain.partial
    assert drain.per_s == pytest.approx(0.5)


def test_start_latency_counts_tasks_that_never_started_as_infinitely_late() -> None:
    records = [(float(i), float(i) + 0.001, float(i) + 0.002, 1, 0) for i in range(99)]
    lat = stats.start_latency(records, 100)
    assert lat.p50_ms == pytest.approx(1.0)
    assert math.isinf(lat.max_ms)
    assert lat.completed == 99


def test_paired_ratio_is_the_median_of_per_run_ratios() -> None:
    # Ratios 2, 4 and 10 (the failed run is left out): median 4.
    assert stats.paired_ratio([20.0, 40.0, 100.0, 5.0], [10.0, 10.0, 10.0, None]) == 4.0
    # For latency, lower is better: theirs / ours.
    assert stats.paired_ratio([1.0, 2.0], [4.0, 8.0], higher_is_better=False) == 4.0
    assert stats.paired_ratio([1.0], [math.inf], higher_is_better=False) == math.inf
    assert stats.paired_ratio([None], [1.0]) is None


def _step(**values: Any) -> dict[str, Any]:
    return dict(values)


def _run(corral: float, dramatiq: float, p99: float) -> dict[str, Any]:
    def system(rate: float, p99_ms: float) -> dict[str, Any]:
        return {
            "noop1": _step(per_s=rate, rss_peak_mb=50.0, commands_per_task=7.0),
            "noop4": _step(per_s=rate * 2),
            "io": _step(per_s=rate / 2, rss_peak_mb=60.0),
            "enqueue": _step(single_per_s=1000.0, bulk_per_s=None),
            "latency": _step(p50_ms=0.5, p99_ms=p99_ms, max_ms=9.0, completed=10, expected=10),
        }
    return {"corral": system(corral, p99), "dramatiq": system(dramatiq, p99 * 100)}


def _results() -> dict[str, Any]:
    return {
        "plan": {"quick": False, "systems": ["corral", "dramatiq"], "noop_n": 20_000,
                 "io_n": 10_000, "single_n": 2_000, "bulk_n": 20_000, "rate_per_s": 500,
                 "load_s": 20, "drain_cap_s": 60, "single_cap_s": 10, "warmup": 10},
        "started": "20260101T000000Z",
        "finished": "20260101T010000Z",
        "machine": {"cpus": 2, "cpus_usable": 2, "cpu_model": "CPU", "memory_gib": 24.0,
                    "os": "Debian", "kernel": "Linux", "python": "3.11.7",
                    "redis_server": "Redis 7.0.15", "load_average_at_start": [1.0, 1.0, 1.0]},
        "versions": {"corral": {"corral": "0.1.0"}, "dramatiq": {"dramatiq": "2.2.1"}},
        "runs": [_run(20_000.0, 2_000.0, 2.0), _run(30_000.0, 1_000.0, 3.0),
                 _run(10_000.0, 2_000.0, 4.0)],
        "commands": {
            "corral": {"client_commands_per_task": 0.02, "client_commands": {"evalsha": 400},
                       "tasks_counted": 20_000},
            "dramatiq": {"error": "boom"},
        },
        "profile": None,
        "operator": {"status": "skipped", "reason": "no binaries"},
    }


def test_summary_uses_medians_and_per_run_ratios() -> None:
    summary = report.summarize(_results())
    corral, dramatiq = summary.rows
    assert corral.cells["noop1"].value == 20_000.0
    assert dramatiq.cells["noop1"].value == 2_000.0
    # Per-run ratios 10, 30 and 5: median 10 (a ratio of medians would also say 10,
    # but the runs are paired, not pooled).
    assert dramatiq.cells["noop1"].ratio == 10.0
    assert summary.speedup_vs_best == 10.0
    assert summary.best_peer == "dramatiq"
    assert dramatiq.cells["p99"].ratio == pytest.approx(100.0)
    assert dramatiq.cells["cmd_client"].error == "boom"


def test_targets_and_the_text_table() -> None:
    summary = report.summarize(_results())
    verdicts = {name.split(",")[0]: met for name, _, met in report.targets(summary)}
    assert verdicts == {"no-op throughput": True,
                        "enqueue-to-start p99 < 5 ms at the offered load": True,
                        "<= 0.2 Redis commands per task (batch size 100)": True}
    assert report.missed_targets(summary) == []
    table = report.text_table(summary)
    header, rule, corral_line, dramatiq_line = table.splitlines()[:4]
    assert header.startswith("system") and set(rule) <= {"-", " "}
    assert "20,000" in corral_line and "(10.0x)" not in corral_line
    assert "2,000 (10.0x)" in dramatiq_line
    assert "failed" in dramatiq_line  # its commands pass failed


def test_markdown_doc_has_the_table_the_targets_and_the_method() -> None:
    results = _results()
    summary = report.summarize(results)
    doc = render(results, summary, {"throughput": "img/bench-throughput.png"})
    assert doc.startswith("# Benchmarks")
    assert report.markdown_table(summary) in doc
    assert "![Worker throughput](img/bench-throughput.png)" in doc
    assert "## Targets" in doc and "## Settings of each system" in doc
    assert "Skipped: no binaries." in doc
    assert "commands pass, Dramatiq: boom" in doc


def test_formatting() -> None:
    assert report.fmt_rate(12_345.6) == "12,346"
    assert report.fmt_rate(20.66) == "20.7"
    assert report.fmt_rate(None) == "-"
    assert report.fmt_ms(math.inf) == "never"
    assert report.fmt_ms(1500.0) == "1.5 s"
    assert report.fmt_ms(0.523) == "0.52"
    assert report.fmt_ratio(12.34) == " (12.3x)"
    assert report.fmt_ratio(math.inf) == " (inf x)"


def test_monitor_lines_are_split_into_client_and_script_commands() -> None:
    assert parse_monitor_line(b'+1.5 [0 lua] "incr" "x"') == ("lua", "incr", b'"incr" "x"')
    assert parse_monitor_line(b'+1.5 [0 127.0.0.1:5000] "EVALSHA" "abc" "0"')[:2] == (
        "127.0.0.1:5000", "evalsha")
    assert parse_monitor_line(b"+OK") is None
    assert calls_between({"get": 5, "info": 1}, {"get": 9, "info": 2}) == 4


def test_py_spy_stacks_are_summed_by_frame() -> None:
    lines = ["main (a.py);loop (b.py);send (c.py) 3", "main (a.py);loop (b.py) 1", "junk"]
    own, inclusive, total = collapse(lines)
    assert total == 4
    assert own["send (c.py)"] == 3 and inclusive["main (a.py)"] == 4
    assert summarize(lines)["self"][0] == ("send (c.py)", 75.0)


def test_requirements_are_split_by_venv() -> None:
    text = """
    # a comment
    rq==3.0.0          # venv: rq
    hiredis==3.5.0     # venv: corral, rq   (why)
    """
    assert parse_requirements(text) == {"rq": ["rq==3.0.0", "hiredis==3.5.0"],
                                        "corral": ["hiredis==3.5.0"]}
    with pytest.raises(SystemExit):
        parse_requirements("celery==5.7.0\n")


def test_the_corral_bench_venv_holds_the_worker_and_the_operator() -> None:
    """`bench/run` starts `corral worker` and `corral operator` from that venv."""
    from bench.venvs import CORRAL_SOURCES, REPO

    assert {REPO, REPO / "worker", REPO / "operator"} <= set(CORRAL_SOURCES)
    assert all((source / "pyproject.toml").is_file() for source in CORRAL_SOURCES)


def test_karpenter_section_renders_the_figures_or_says_how_to_get_them() -> None:
    from bench.doc import karpenter_section

    assert "Not measured: run `python bench/karpenter.py" in karpenter_section(None)
    figures = {
        "measured": "2026-12-02",
        "first_task": {"trials": [{"first_task_s": 4.0, "first_pod_running_s": 2.0, "nodes": 2},
                                  {"first_task_s": 6.0, "first_pod_running_s": 3.0, "nodes": 1}],
                       "median_s": 5.0, "p90_s": 5.8, "batch_idle": "1s", "batch_max": "10s"},
        "load_drop": [{"protect": True, "interrupted": 0, "lowest_replicas": 4,
                       "nodes_peak": 2, "nodes_after": 2},
                      {"protect": False, "interrupted": 3, "lowest_replicas": 2,
                       "nodes_peak": 2, "nodes_after": 1}],
    }
    text = karpenter_section(figures)
    assert "| first task | 5.0 s | 5.8 s | 4.0 s | 6.0 s |" in text
    assert "| pod Running | 2.5 s | 2.9 s | 2.0 s | 3.0 s |" in text
    assert "Nodes Karpenter launched per trial: 1/2." in text
    assert "| on | 0 | 4 | 2 | 2 |" in text
    assert "| off (maxDrainSeconds 0) | 3 | 2 | 2 | 1 |" in text
    assert "BATCH_IDLE_DURATION=1s" in text and "2026-12-02" in text


def test_bench_run_keeps_the_sections_other_scripts_wrote(tmp_path: Path) -> None:
    from bench.harness import KEPT_MARKER, kept_sections

    page = tmp_path / "benchmarks.md"
    assert kept_sections(page) == ""
    page.write_text(f"# generated\n\n{KEPT_MARKER}\n\n## Soak\n\nfigures\n")
    assert kept_sections(page) == f"\n{KEPT_MARKER}\n\n## Soak\n\nfigures\n"
