"""Redis key names. Every key of one queue shares the hash tag ``{queue}``, so
each Lua script touches a single hash slot and works unchanged on Redis Cluster.

Layout of queue ``Q`` (prefix ``corral:{Q}:``):

========================  =======  ================================================
``ready:0`` … ``ready:9``  list     ids waiting to run, one list per priority (FIFO)
``scheduled``              zset     ids waiting for a time (delay, retry backoff)
``leased``                 zset     ids claimed by a worker, scored by lease deadline
``dead``                   zset     ids in the dead-letter queue, scored by expiry time
``keys``                   hash     de-duplication key -> id of the live task
``cancelled``              set      ids cancelled while queued, still in a ready list
``t:<id>``                 hash     one task: name, payload, state, attempts, result…
``workers``                zset     worker ids, scored by registry expiry
``w:<worker id>``          hash     one worker's registry entry
``limited``                zset     ids a rate or concurrency limit holds back
``lim:c:<limit>``          zset     ids holding one limit's concurrency slots, by lease
``lim:w:<limit>``          list     ids waiting for one of those slots
``lim:r:<limit>``          string   one rate limit's state (GCRA arrival time, ms)
========================  =======  ================================================

``<limit>`` is the task's name, then ``|`` and the key for per-key limits
(corral/limits.py); the scripts build those keys from the ``limit`` field of a record.

Channels: ``wake`` (work may be available), ``cancel`` (id of a running task to
cancel), ``done`` (space-separated ids that reached a final state). On Redis 7+
Cluster they are shard channels (SPUBLISH/SSUBSCRIBE), so a wake-up stays in the
queue's shard.

Every script gets the same queue keys first (``QueueKeys.script_keys``, in the order
of ``corral/_lua/prelude.lua``), then the record keys the caller knows.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from functools import cache

PRIORITIES = range(10)
# A task id is ``<queue>:<random hex>``, so status, result and cancel find the queue
# from the id alone. 104 random bits; with the longest queue name the id still fits the
# 128 characters that the claim script accepts.
_ID_RANDOM_BYTES = 13
_QUEUE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def validate_queue_name(name: str) -> str:
    if not _QUEUE_NAME.match(name):
        raise ValueError(
            f"invalid queue name {name!r}: use 1-100 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


@dataclass(frozen=True, slots=True)
class QueueKeys:
    queue: str
    prefix: str
    ready: tuple[str, ...]
    scheduled: str
    leased: str
    dead: str
    dedupe: str
    workers: str
    cancelled: str
    wake_channel: str
    cancel_channel: str
    done_channel: str
    limited: str
    # KEYS[1..20] of every script: the order is prelude.lua's.
    script_keys: tuple[str, ...]

    def task(self, task_id: str) -> str:
        return f"{self.prefix}t:{task_id}"

    def worker(self, worker_id: str) -> str:
        return f"{self.prefix}w:{worker_id}"


@cache
def queue_keys(queue: str) -> QueueKeys:
    validate_queue_name(queue)
    prefix = f"corral:{{{queue}}}:"
    ready = tuple(f"{prefix}ready:{p}" for p in PRIORITIES)
    named = {
        name: f"{prefix}{suffix}"
        for name, suffix in (
            ("scheduled", "scheduled"), ("leased", "leased"), ("dead", "dead"),
            ("dedupe", "keys"), ("workers", "workers"), ("cancelled", "cancelled"),
            ("wake_channel", "wake"), ("cancel_channel", "cancel"), ("done_channel", "done"),
            ("limited", "limited"),
        )
    }
    return QueueKeys(queue=queue, prefix=prefix, ready=ready, **named,
                     script_keys=(*ready, *named.values()))


def new_task_id(queue: str) -> str:
    return f"{queue}:{secrets.token_hex(_ID_RANDOM_BYTES)}"


def queue_of_task_id(task_id: str) -> str | None:
    """The queue named in a task id, or None for ids made before ids named their queue."""
    queue, sep, _ = task_id.partition(":")
    return queue if sep and _QUEUE_NAME.match(queue) else None


def queue_of_channel(channel: str) -> str:
    """The queue name in a channel name such as ``corral:{default}:wake``."""
    return channel[channel.index("{") + 1 : channel.rindex("}")]
