"""The chart's alert rules evaluated by Prometheus's own rule engine (``promtool test
rules``) on made-up series: the dead-letter alert fires on the number of tasks that
entered the dead-letter queue, and a requeue does not cancel it out."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.test_chart import helm, one, template

__all__ = ["helm"]  # the fixture, used by name

LABELS = 'namespace="team-a", taskqueue="mail", queue="default"'
SUMMARY = ("Tasks are being dead-lettered on queue default of TaskQueue team-a/mail.")


@pytest.fixture(scope="session")
def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is needed: apt-get install prometheus (see .ci/run)"
    return path


def rule_file(helm: str, tmp_path: Path, **values: Any) -> Path:
    docs = template(helm, tmp_path, {"metrics": {"prometheusRule": {"enabled": True, **values}}})
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": one(docs, "PrometheusRule")["spec"]["groups"]}))
    return path


def description(n: int) -> str:
    return (f"{n} tasks entered the dead-letter queue of default within 30m. Inspect them "
            "with `corral dlq list --queue default`.")


def alert(n: int) -> dict[str, Any]:
    return {"exp_labels": {"severity": "warning", "namespace": "team-a", "taskqueue": "mail",
                           "queue": "default"},
            "exp_annotations": {"summary": SUMMARY, "description": description(n)}}


def run(promtool: str, tmp_path: Path, rules: Path, series: list[dict[str, str]],
        checks: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    test = {"rule_files": [str(rules)], "evaluation_interval": "1m",
            "tests": [{"interval": "1m", "input_series": series,
                       "alert_rule_test": [{"alertname": "CorralDeadLetterGrowing", **c}
                                           for c in checks]}]}
    path = tmp_path / "test.yaml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    return subprocess.run([promtool, "test", "rules", str(path)], capture_output=True,
                          text=True, timeout=60)


def test_dead_letter_alert_fires_on_the_number_that_entered_and_survives_a_requeue(
    promtool: str, helm: str, tmp_path: Path,
) -> None:
    series = [
        # Two worker pods count the tasks they dead-lettered: 2 + 1 within the window.
        {"series": f'corral_tasks_total{{{LABELS}, outcome="dead", pod="w-1"}}',
         "values": "0x40 1 2 2x60"},
        {"series": f'corral_tasks_total{{{LABELS}, outcome="dead", pod="w-2"}}',
         "values": "0x41 1 1x60"},
        {"series": f'corral_tasks_total{{{LABELS}, outcome="succeeded", pod="w-1"}}',
         "values": "0+10x100"},
        # The queue's size: the three are requeued at once (what delta() would read).
        {"series": f"corral_operator_dead_letter{{{LABELS}}}", "values": "0x40 1 3 0x60"},
    ]
    checks = [
        {"eval_time": "39m", "exp_alerts": []},  # nothing dead-lettered yet
        {"eval_time": "45m", "exp_alerts": [alert(3)]},  # 3, not an extrapolated 3.075
        {"eval_time": "60m", "exp_alerts": [alert(3)]},  # requeued meanwhile: still 3
        {"eval_time": "80m", "exp_alerts": []},  # out of the 30m window
    ]
    result = run(promtool, tmp_path, rule_file(helm, tmp_path), series, checks)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dead_letter_alert_waits_for_more_than_the_threshold(
    promtool: str, helm: str, tmp_path: Path,
) -> None:
    series = [{"series": f'corral_tasks_total{{{LABELS}, outcome="dead", pod="w-1"}}',
               "values": "0x40 1 2 3 3x60"}]
    checks = [{"eval_time": "42m", "exp_alerts": []},  # 2 is not more than 2
              {"eval_time": "45m", "exp_alerts": [alert(3)]}]
    result = run(promtool, tmp_path, rule_file(helm, tmp_path, deadLetterThreshold=2), series,
                 checks)
    assert result.returncode == 0, result.stdout + result.stderr
