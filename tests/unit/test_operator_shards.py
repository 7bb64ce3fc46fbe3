"""Splitting TaskQueues across operator processes: the pure shard function and
the names that keep shards apart."""

from __future__ import annotations

import argparse
import hashlib
import uuid

import pytest

from corral_operator.cli import shard_arg
from corral_operator.main import OperatorConfig, kopf_settings, peering_name
from corral_operator.shards import WHOLE, Shard, shard_of, stale_finalizers

UIDS = [str(uuid.UUID(int=i * 7919 + 1)) for i in range(2000)]


@pytest.mark.parametrize("count", [1, 2, 3, 7, 16])
def test_every_uid_belongs_to_exactly_one_shard(count: int) -> None:
    shards = [Shard(i, count) for i in range(count)]
    for uid in UIDS:
        assert sum(s.owns(uid) for s in shards) == 1


def test_the_shard_of_a_uid_is_stable_across_processes() -> None:
    # Known values: a salted hash (Python's hash()) would differ between processes.
    assert [shard_of(u, 4) for u in ("a", "b", "c", "d")] == [
        int.from_bytes(hashlib.sha256(u.encode()).digest()[:8], "big") % 4
        for u in ("a", "b", "c", "d")]
    assert shard_of("5f0c7d4e-0000-4000-8000-000000000001", 3) == shard_of(
        "5f0c7d4e-0000-4000-8000-000000000001", 3)


def test_uids_spread_evenly() -> None:
    counts = [sum(1 for u in UIDS if shard_of(u, 4) == i) for i in range(4)]
    assert min(counts) > len(UIDS) / 4 * 0.8


def test_whole_owns_everything() -> None:
    assert all(WHOLE.owns(u) for u in UIDS[:50])


@pytest.mark.parametrize("text, shard", [("0/1", Shard(0, 1)), ("2/4", Shard(2, 4)),
                                         (" 1/2 ", Shard(1, 2))])
def test_parse(text: str, shard: Shard) -> None:
    assert Shard.parse(text) == shard


@pytest.mark.parametrize("text", ["2/2", "-1/2", "0/0", "1", "a/b", "0/2000", "1/2/3"])
def test_bad_shards_are_refused_with_one_line(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as info:
        shard_arg(text)
    assert "\n" not in str(info.value)


def test_each_shard_has_its_own_peering_and_finalizer() -> None:
    names = {peering_name("corral", Shard(i, 3)) for i in range(3)}
    assert len(names) == 3 and "corral" not in names
    finalizers = {Shard(i, 3).finalizer for i in range(3)}
    assert len(finalizers) == 3
    # Unsharded: the names of before, so upgrading changes nothing.
    assert peering_name("corral", WHOLE) == "corral"
    assert WHOLE.finalizer == "corral.dev/operator"


def test_finalizers_of_another_layout_are_stale() -> None:
    on_object = ["corral.dev/operator", "corral.dev/operator-shard-1-of-3",
                 "corral.dev/operator-shard-0-of-2", "example.com/keep", "corral.dev/other"]
    assert stale_finalizers(on_object, Shard(0, 2).finalizer) == [
        "corral.dev/operator", "corral.dev/operator-shard-1-of-3"]
    assert stale_finalizers(on_object, WHOLE.finalizer) == [
        "corral.dev/operator-shard-1-of-3", "corral.dev/operator-shard-0-of-2"]


def test_kopf_settings_of_a_shard() -> None:
    settings = kopf_settings(OperatorConfig(peering="corral", shard=Shard(1, 2)))
    assert settings.peering.name == "corral-shard-1-of-2"
    assert settings.persistence.finalizer == "corral.dev/operator-shard-1-of-2"
