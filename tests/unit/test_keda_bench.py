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


def test_tasks_that_never_finished_are_shown_and_explained() -> None:
    from bench import keda_section

    drop = {"interrupted": 2, "lowest_replicas": 0, "replicas_after_hold": 0,
            "workers_stopped": 6, "unfinished": 4}
    row = {"settings": "pollingInterval 1", "from_zero_s": 0.7, "from_zero_s_max": 0.8,
           "reaction_s": 29.8, "reaction_s_max": 29.9,
           "steady": [{"changes": 9, "min_replicas": 0, "max_replicas": 5}], "drop": [drop]}
    text = keda_section.markdown({"scalers": {"keda-tuned": row}, "runs": ["--trials 1"]})
    assert "| 2 (6), 4 never finished | 0 (then 0) |" in text
    assert "Where tasks *never finished*" in text
    assert "The figures come from `--trials 1`." in text
    assert "n/a" not in text
    done = {**row, "drop": [{**drop, "unfinished": 0}]}
    assert "never finished*, the" not in keda_section.markdown({"scalers": {"keda-tuned": done}})
