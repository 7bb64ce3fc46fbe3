"""The KEDA side of bench/keda_side_by_side.py: its ScaledObject watches the list a
Corral producer pushes default-priority tasks to."""

from __future__ import annotations

from bench.keda_side_by_side import SETTINGS, scaled_object
from corral.keys import DEFAULT_PREFIX, queue_keys


def test_the_scaled_object_watches_the_default_priority_ready_list() -> None:
    body = scaled_object("team-a", SETTINGS["keda-default"], 6379, "jobs")
    (trigger,) = body["spec"]["triggers"]
    assert trigger["type"] == "redis"
    assert trigger["metadata"]["listName"] == queue_keys("jobs", DEFAULT_PREFIX).ready[0]
    assert trigger["metadata"]["listName"] == "corral:{jobs}:ready:0"
    assert body["spec"]["pollingInterval"] == 30
