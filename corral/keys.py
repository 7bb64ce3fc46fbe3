"""Redis key names. Every key of one queue shares the hash tag ``{queue}``, so
each Lua script touches a single hash slot and works unchanged on Redis Cluster.

Every key starts with the application's prefix (``App(prefix=...)``, ``--prefix``,
``$CORRAL_PREFIX``, ``spec.redis.prefix``; default ``corral``): two applications with
a queue ``default`` on one Redis use ``a:{default}:…`` and ``b:{default}:…`` and never
meet. The prefix is not part of the hash tag, so the default prefix keeps the key
names (and slots) Corral always used; nor part of a task id: an id is looked up
under the prefix of the client that asks, so another application's id finds nothing.

Layout of queue ``Q`` under prefix ``P`` (key prefix ``P:{Q}:``):

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
``schedules``              hash     periodic task name -> its definition (JSON)
``ticks``                  hash     periodic task name -> its last tick enqueued, ms
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

A new key of a queue is declared here and nowhere else: a field of ``QueueKeys`` and
its ``(field, suffix)`` pair in ``_SUFFIXES`` (appended at the end: the Lua scripts
find the keys by position, see ``prelude.lua``), or, for a key per record, a method
like ``QueueKeys.task``; the Lua scripts build record keys only from the queue's key
prefix, which they take from a key in KEYS. ``corral acl`` derives its key and channel
patterns from ``queue_keys`` too, so a key declared here is covered by the ACL rules.

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
DEFAULT_PREFIX = "corral"
# No ':', '{', '}' or glob characters: a key's prefix, hash tag and ACL pattern stay
# unambiguous (the TaskQueue CRD uses the same pattern).
PREFIX_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,49}$"
_PREFIX = re.compile(PREFIX_PATTERN)


def validate_queue_name(name: str) -> str:
    if not _QUEUE_NAME.match(name):
        raise ValueError(
            f"invalid queue name {name!r}: use 1-100 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def validate_prefix(prefix: str) -> str:
    if not isinstance(prefix, str) or not _PREFIX.match(prefix):
        raise ValueError(
            f"invalid key prefix {prefix!r}: use 1-50 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return prefix


def queue_key_prefix(queue: str, prefix: str) -> str:
    """``P:{Q}:``, the start of every key and channel of queue ``Q`` under prefix ``P``."""
    return f"{validate_prefix(prefix)}:{{{validate_queue_name(queue)}}}:"


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
    schedules: str
    ticks: str
    # KEYS[1..20] of every script: the order is prelude.lua's.
    script_keys: tuple[str, ...]

    def task(self, task_id: str) -> str:
        return f"{self.prefix}t:{task_id}"

    def worker(self, worker_id: str) -> str:
        return f"{self.prefix}w:{worker_id}"


# QueueKeys field -> key suffix, in the order of the scripts' KEYS after the ready lists.
_SUFFIXES = (
    ("scheduled", "scheduled"), ("leased", "leased"), ("dead", "dead"),
    ("dedupe", "keys"), ("workers", "workers"), ("cancelled", "cancelled"),
    ("wake_channel", "wake"), ("cancel_channel", "cancel"), ("done_channel", "done"),
    ("limited", "limited"),
)
CHANNEL_FIELDS = frozenset({"wake_channel", "cancel_channel", "done_channel"})
# A wake-up carries this when the queue's periodic tasks changed (the operator then
# reads them again); any other wake-up says only that there may be work.
SCHEDULES_CHANGED = "schedules"


@cache
def queue_keys(queue: str, prefix: str) -> QueueKeys:
    """The keys of ``queue`` under the application's key ``prefix`` (no default here, so
    that a caller cannot forget it; ``DEFAULT_PREFIX`` is the applications' default)."""
    start = queue_key_prefix(queue, prefix)
    ready = tuple(f"{start}ready:{p}" for p in PRIORITIES)
    named = {name: f"{start}{suffix}" for name, suffix in _SUFFIXES}
    return QueueKeys(queue=queue, prefix=start, ready=ready, **named,
                     schedules=f"{start}schedules", ticks=f"{start}ticks",
                     script_keys=(*ready, *named.values()))


def queue_scan_pattern(prefix: str) -> str:
    """A SCAN pattern that matches the keys of every queue under ``prefix`` only."""
    return f"{validate_prefix(prefix)}:{{*}}:*"


def new_task_id(queue: str) -> str:
    return f"{queue}:{secrets.token_hex(_ID_RANDOM_BYTES)}"


def queue_of_task_id(task_id: str) -> str | None:
    """The queue named in a task id, or None for ids made before ids named their queue."""
    queue, sep, _ = task_id.partition(":")
    return queue if sep and _QUEUE_NAME.match(queue) else None


def queue_of_channel(channel: str) -> str:
    """The queue name in a channel name such as ``corral:{default}:wake``. The prefix
    cannot hold a '{', so the first one opens the hash tag."""
    return channel[channel.index("{") + 1 : channel.rindex("}")]
