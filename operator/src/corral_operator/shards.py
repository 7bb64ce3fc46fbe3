"""Splitting TaskQueues across several operator processes. Pure code.

Shard ``I/N`` handles the TaskQueues whose uid hashes to ``I`` modulo ``N``. A uid
never changes, so a TaskQueue belongs to one shard for its whole life, whichever
shard restarts; each shard is its own kopf peering (an active replica and
standbys), so a restarted shard's TaskQueues are taken over by its standby and by
no other shard."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from corral_operator.models import GROUP

_SPEC = re.compile(r"^(\d+)/(\d+)$")
MAX_SHARDS = 1024
FINALIZER = f"{GROUP}/operator"


def shard_of(uid: str, count: int) -> int:
    """The shard of a uid: a stable hash (not Python's ``hash``, which is salted
    per process), so every process and every restart agrees."""
    digest = hashlib.sha256(uid.encode()).digest()
    return int.from_bytes(digest[:8], "big") % count


@dataclass(frozen=True, slots=True)
class Shard:
    index: int
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_SHARDS:
            raise ValueError(f"shard count must be 1 to {MAX_SHARDS}, not {self.count}")
        if not 0 <= self.index < self.count:
            raise ValueError(f"shard index must be 0 to {self.count - 1}, not {self.index}")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"I/N"``, e.g. ``"0/4"`` for the first of four shards."""
        match = _SPEC.match(text.strip())
        if not match:
            raise ValueError(f"shard must look like I/N (e.g. 0/4), not {text!r}")
        return cls(int(match[1]), int(match[2]))

    def owns(self, uid: str) -> bool:
        return shard_of(uid, self.count) == self.index

    @property
    def suffix(self) -> str:
        """What names this shard's own kopf objects: peering, finalizer."""
        return f"shard-{self.index}-of-{self.count}"

    @property
    def finalizer(self) -> str:
        """Each shard its own finalizer: kopf removes its finalizer from every object
        that none of its handlers matches, so a shared name would be added by one
        shard and removed by the others, over and over."""
        return FINALIZER if self.count == 1 else f"{FINALIZER}-{self.suffix}"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


WHOLE = Shard(0, 1)  # an unsharded operator: every TaskQueue


def stale_finalizers(finalizers: Iterable[str], mine: str) -> list[str]:
    """Corral finalizers of another shard layout (left by an earlier ``--shard``
    count, or by an unsharded operator): no running shard would ever remove them."""
    return [f for f in finalizers
            if f != mine and (f == FINALIZER or f.startswith(f"{FINALIZER}-shard-"))]
