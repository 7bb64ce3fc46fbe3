"""Operator wiring: kopf settings and the handler registry."""

from __future__ import annotations

import kopf

from corral.cli import build_parser
from corral.operator import handlers, main
from corral.operator.controller import Runtime
from corral.operator.metrics import OperatorMetrics


def test_kopf_settings_keep_kopf_out_of_the_status() -> None:
    settings = main.kopf_settings(main.OperatorConfig())
    assert settings.posting.enabled is False
    assert settings.persistence.finalizer == "corral.dev/operator"
    assert isinstance(settings.persistence.progress_storage, kopf.AnnotationsProgressStorage)
    assert settings.peering.standalone is True
    assert settings.watching.server_timeout


def test_peering_is_opt_in() -> None:
    settings = main.kopf_settings(main.OperatorConfig(peering="corral", namespaces=("a",)))
    assert settings.peering.standalone is False
    assert settings.peering.mandatory is True
    assert settings.peering.name == "corral"
    assert settings.peering.clusterwide is False


def test_registry_holds_login_daemon_and_spec_watch() -> None:
    runtime = Runtime(kube=None, metrics=OperatorMetrics())  # type: ignore[arg-type]
    registry = handlers.build_registry(runtime)
    spawning = [h.id for h in registry._spawning.get_all_handlers()]
    watching = [h.id for h in registry._watching.get_all_handlers()]
    activities = [h.activity.value for h in registry._activities.get_all_handlers()]
    assert spawning == ["control-loop"]
    assert watching == ["spec-watch"]
    assert activities == ["authentication"]


def test_cli_flags_reach_run_operator() -> None:
    args = build_parser().parse_args(
        ["operator", "--namespace", "a", "--namespace", "b", "--metrics-port", "9",
         "--health-port", "10", "--host", "127.0.0.1", "--peering", "p"])
    assert (args.namespaces, args.metrics_port, args.health_port, args.host, args.peering) == (
        ["a", "b"], 9, 10, "127.0.0.1", "p")
