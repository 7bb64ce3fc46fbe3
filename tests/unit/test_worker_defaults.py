"""The worker's defaults and bounds as its settings, its command line and the
operator's TaskQueue schema state them: all three read ``corral.defaults``."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from corral import defaults
from corral.cli import build_parser
from corral_operator import deployment, models
from corral_worker.settings import WorkerSettings

# (WorkerSettings field, TaskQueue spec.worker field, the shared value)
SHARED = [
    ("concurrency", "concurrency", defaults.CONCURRENCY),
    ("batch_size", "batchSize", defaults.BATCH_SIZE),
    ("lease_s", "leaseSeconds", defaults.LEASE_S),
    ("grace_s", "graceSeconds", defaults.GRACE_S),
]


def _parse(argv: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(argv)


@pytest.mark.parametrize(("setting", "spec_field", "shared"), SHARED,
                         ids=[s for s, _, _ in SHARED])
def test_settings_and_the_taskqueue_schema_share_default_and_bounds(
        setting: str, spec_field: str, shared: defaults.Bounded) -> None:
    worker: dict[str, Any] = WorkerSettings.model_json_schema()["properties"][setting]
    spec: dict[str, Any] = models.WorkerSpec.model_json_schema(by_alias=True)[
        "properties"][spec_field]
    for props in (worker, spec):
        assert (props["default"], props["minimum"], props["maximum"]) == (
            shared.default, shared.min, shared.max)


def test_the_command_line_defaults_are_the_settings_defaults() -> None:
    args = _parse(["worker", "m:app"])
    settings = WorkerSettings(redis_url="redis://r")
    assert (args.concurrency, args.batch_size, args.lease_seconds, args.grace_seconds,
            args.metrics_port, args.metrics_host, args.queues) == (
        settings.concurrency, settings.batch_size, settings.lease_s, settings.grace_s,
        settings.metrics_port, settings.metrics_host, settings.queues)
    assert args.log_level == defaults.LOG_LEVEL


def test_the_command_line_help_shows_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _parse(["worker", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag, shared in [("--concurrency", defaults.CONCURRENCY),
                         ("--batch-size", defaults.BATCH_SIZE),
                         ("--lease-seconds", defaults.LEASE_S),
                         ("--grace-seconds", defaults.GRACE_S)]:
        after = text[text.rindex(flag + " "):]  # the option, not the usage line
        assert f"(default {shared.default})" in after[:200], after[:200]


def test_an_untuned_taskqueue_runs_workers_with_the_worker_defaults() -> None:
    spec = models.TaskQueueSpec.model_validate({
        "redis": {"url": "redis://r"}, "queues": [{"name": "q"}],
        "worker": {"image": "example.invalid/app:1", "app": "m:app"}})
    rendered = _parse(deployment.worker_command(spec)[1:])
    typed = _parse(["worker", "m:app"])
    for name in ("concurrency", "batch_size", "lease_seconds", "grace_seconds",
                 "metrics_port", "log_level"):
        assert getattr(rendered, name) == getattr(typed, name), name
