"""Operator wiring: kopf settings and the handler registry."""

from __future__ import annotations

import subprocess
import sys

import kopf
import pytest

from corral.cli import build_parser
from corral_operator import handlers, main
from corral_operator.controller import Runtime
from corral_operator.metrics import OperatorMetrics
from corral_operator.shards import WHOLE, Shard


def test_kopf_settings_keep_kopf_out_of_the_status() -> None:
    settings = main.kopf_settings(main.OperatorConfig())
    assert settings.posting.enabled is False
    assert settings.persistence.finalizer == "corral.dev/operator"
    assert isinstance(settings.persistence.progress_storage, kopf.AnnotationsProgressStorage)
    assert settings.peering.standalone is True
    assert settings.watching.server_timeout


def test_peering_is_opt_in() -> None:
    settings = main.kopf_settings(main.OperatorConfig(peering="corral", namespaces=("a",),
                                                      priority=-7, peering_lifetime_s=9))
    assert settings.peering.standalone is False
    assert settings.peering.mandatory is True
    assert settings.peering.name == "corral"
    assert settings.peering.clusterwide is False
    assert (settings.peering.priority, settings.peering.lifetime) == (-7, 9)


def test_the_oldest_replica_has_the_highest_priority() -> None:
    first = main.startup_priority(started_ms=1_000, jitter=999)
    second = main.startup_priority(started_ms=1_001, jitter=0)
    assert first > second
    # Replicas started in the same millisecond still differ (by the random part).
    assert main.startup_priority(1_000, 1) != main.startup_priority(1_000, 2)
    # kopf's default priority 0 (a developer's operator, `kopf freeze`) outranks them all.
    assert main.startup_priority() < 0


def test_two_replicas_started_together_get_distinct_priorities() -> None:
    assert len({main.startup_priority() for _ in range(50)}) > 1


def test_registry_holds_login_daemon_and_spec_watch() -> None:
    runtime = Runtime(kube=None, metrics=OperatorMetrics())  # type: ignore[arg-type]
    registry = handlers.build_registry(runtime)
    spawning = [h.id for h in registry._spawning.get_all_handlers()]
    watching = [h.id for h in registry._watching.get_all_handlers()]
    activities = [h.activity.value for h in registry._activities.get_all_handlers()]
    assert spawning == ["control-loop"]
    assert watching == ["spec-watch", "worker-deployments", "worker-pods"]
    assert activities == ["authentication"]


def test_cli_flags_reach_run_operator() -> None:
    args = build_parser().parse_args(
        ["operator", "--namespace", "a", "--namespace", "b", "--metrics-port", "9",
         "--health-port", "10", "--host", "127.0.0.1", "--peering", "p", "--priority", "5",
         "--peering-lifetime", "7"])
    assert (args.namespaces, args.metrics_port, args.health_port, args.host, args.peering,
            args.priority, args.peering_lifetime) == (["a", "b"], 9, 10, "127.0.0.1", "p", 5, 7)


def test_cli_defaults_for_peering() -> None:
    args = build_parser().parse_args(["operator"])
    assert args.priority is None  # derived from the start time
    assert args.peering_lifetime == main.DEFAULT_PEERING_LIFETIME_S


def test_cli_shard_flag() -> None:
    assert build_parser().parse_args(["operator", "--shard", "1/3"]).shard == Shard(1, 3)
    assert build_parser().parse_args(["operator"]).shard == WHOLE


# A tick's pipeline of depth replies at 1,000 TaskQueues: thousands of small lists that
# live until the replies are parsed, then go at once.
_TICKS = """
import gc, sys
from corral_operator import main
if sys.argv[1] == "tuned":
    main.tune_gc()
full = []
gc.callbacks.append(lambda phase, info: phase == "stop" and info["generation"] == 2
                    and full.append(1))
kept = [[i] for i in range(200_000)]  # what the TaskQueues keep
for _ in range(40):
    replies = [[b"ready", i, [i, i]] for i in range(10_000)]
    del replies
print(len(full))
"""


@pytest.mark.parametrize(("mode", "any_full"), [("default", True), ("tuned", False)])
def test_a_ticks_replies_do_not_set_off_collections_of_the_whole_heap(
        mode: str, any_full: bool) -> None:
    out = subprocess.run([sys.executable, "-c", _TICKS, mode], capture_output=True,
                         text=True, check=True).stdout
    count = int(out)
    assert (count > 0) == any_full, (mode, count)
