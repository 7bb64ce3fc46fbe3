"""The Lua scripts that change queue state atomically, loaded once per client.

Each script is the defaults below, then ``_lua/prelude.lua`` (the key layout, the
priority clamp, Redis's clock in ms, publishing, retention, the attempt history: the
rules every script shares, written once) and ``_lua/limits.lua`` (rate and concurrency
limits), then the script's own text. Every call passes the queue's keys first
(``QueueKeys.script_keys``) and the record keys the caller knows after them; ARGV[1]
says whether the client talks to a Redis Cluster (shard channels)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript
from redis.exceptions import NoPermissionError, NoScriptError, ResponseError

from corral.connection import is_cluster
from corral.defaults import ATTEMPTS_KEPT
from corral.errors import CorralError
from corral.keys import SCHEDULES_CHANGED, QueueKeys
from corral.retention import DEFAULT_DEAD_TTL_S, DEFAULT_RESULT_TTL_S

NAMES = ("enqueue", "claim", "finish", "heartbeat", "cancel", "depths", "dlq", "progress",
         "tick", "schedules")
_LUA = Path(__file__).parent / "_lua"
# In front of every script, in this order: the rules all share, then the limits'.
_SHARED = ("prelude.lua", "limits.lua")


class PermissionDenied(CorralError, NoPermissionError):
    """The Redis user may not touch a queue's keys or run a command a script runs
    (its ACL rules, see ``corral acl``). Still a redis-py NoPermissionError, so code
    that handles Redis errors handles this one."""


# What Redis says when a script's own command is refused: a plain error, not NOPERM.
_SCRIPT_REFUSED = ("can't access at least one of the keys", "can't run this command",
                   "no permissions to access a channel")


def _denied(exc: ResponseError, queue: QueueKeys) -> PermissionDenied | None:
    """A readable error naming the queue's keys when ``exc`` is a refusal by ACL."""
    text = str(exc)
    if not isinstance(exc, NoPermissionError) and not any(s in text for s in _SCRIPT_REFUSED):
        return None
    reason = text.split(" script: ")[0].rstrip(".")
    return PermissionDenied(
        f"permission denied: the Redis user may not use queue {queue.queue!r} "
        f"(keys {queue.prefix}*): {reason}; see corral acl")


# Scripts that only read: called with EVALSHA_RO, so that a user whose ACL rules allow
# reading a queue's keys only (%R~, the operator's) may run them.
READ_ONLY = frozenset({"depths"})


class Script:
    """One registered script, called with a queue's keys and the caller's own."""

    __slots__ = ("_flag", "read_only", "script")

    def __init__(self, script: AsyncScript, cluster: bool, read_only: bool = False) -> None:
        self.script = script
        self._flag = "1" if cluster else "0"
        # Cleared on a Redis older than 7, which has no EVALSHA_RO.
        self.read_only = read_only

    async def __call__(
        self,
        queue: QueueKeys,
        records: Sequence[str] = (),
        args: Sequence[Any] = (),
        client: Redis | Pipeline | None = None,
    ) -> Any:
        keys = [*queue.script_keys, *records]
        try:
            if self.read_only:
                return await self._call_read_only(keys, [self._flag, *args], client)
            return await self.script(keys=keys, args=[self._flag, *args], client=client)
        except ResponseError as exc:
            if _unknown_read_only(exc) and client is None:
                self.read_only = False
                return await self(queue, records, args)
            denied = _denied(exc, queue)
            if denied is None:
                raise
            raise denied from None


    async def _call_read_only(self, keys: list[str], args: list[Any],
                              client: Redis | Pipeline | None) -> Any:
        target = client if client is not None else self.script.registered_client
        if isinstance(target, Pipeline):
            target.scripts.add(cast(Any, self.script))  # loaded (SCRIPT EXISTS/LOAD) before it runs
        try:
            return await target.evalsha_ro(self.script.sha, len(keys), *keys, *args)
        except NoScriptError:
            self.script.sha = await target.script_load(self.script.script)
            return await target.evalsha_ro(self.script.sha, len(keys), *keys, *args)


def _unknown_read_only(exc: ResponseError) -> bool:
    return "unknown command" in str(exc).lower() and "evalsha_ro" in str(exc).lower()


ScriptCall = tuple[Script, QueueKeys, Sequence[str], Sequence[Any]]  # script, queue, records, args


async def call_many(redis: Redis, calls: Sequence[ScriptCall]) -> list[Any]:
    """Several script calls in one pipelined round trip. Redis Cluster refuses scripts
    in pipelines, so there they are sent one after another (one at a time also keeps
    within a small connection pool, which redis-py's cluster client does not wait for)."""
    if is_cluster(redis):
        return [await script(queue, records, args) for script, queue, records, args in calls]
    async with redis.pipeline(transaction=False) as pipe:
        for script, queue, records, args in calls:
            await script(queue, records, args, client=pipe)
        try:
            return list(await pipe.execute())
        except ResponseError as exc:
            if _unknown_read_only(exc):  # Redis < 7: once more, with EVALSHA
                for script, _, _, _ in calls:
                    script.read_only = False
                return await call_many(redis, calls)
            denied = _denied(exc, calls[0][1]) if len({c[1] for c in calls}) == 1 else None
            if denied is None and isinstance(exc, NoPermissionError):
                queues = ", ".join(sorted({repr(c[1].queue) for c in calls}))
                denied = PermissionDenied(f"permission denied: the Redis user may not use "
                                          f"one of the queues {queues}: {exc}; see corral acl")
            if denied is None:
                raise
            raise denied from None


def own_source(name: str) -> str:
    """The text of script ``name`` alone, without the prelude."""
    return (_LUA / f"{name}.lua").read_text()


def prelude_source() -> str:
    """The shared part of every script: the prelude and the functions it adds."""
    return "\n".join((_LUA / part).read_text() for part in _SHARED)


@cache
def source(name: str) -> str:
    """The full text sent to Redis for script ``name``."""
    defaults = (
        "-- Defaults, from corral/retention.py.\n"
        f"local DEFAULT_RESULT_TTL_MS = {int(DEFAULT_RESULT_TTL_S * 1000)}\n"
        f"local DEFAULT_DEAD_TTL_MS = {int(DEFAULT_DEAD_TTL_S * 1000)}\n"
        "-- From corral/defaults.py.\n"
        f"local ATTEMPTS_KEPT = {ATTEMPTS_KEPT}\n"
        "-- From corral/keys.py.\n"
        f"local SCHEDULES_CHANGED = '{SCHEDULES_CHANGED}'\n"
    )
    # The defaults first: the prelude's functions read some of them.
    return f"{defaults}\n{prelude_source()}\n-- {name}.lua\n{own_source(name)}"


@dataclass(frozen=True, slots=True)
class Scripts:
    enqueue: Script
    claim: Script
    finish: Script
    heartbeat: Script
    cancel: Script
    depths: Script
    dlq: Script
    progress: Script
    tick: Script
    schedules: Script

    @classmethod
    def register(cls, redis: Redis) -> Scripts:
        # register_script sends EVALSHA and loads the script on NOSCRIPT, so a
        # restarted Redis (with an empty script cache) needs nothing special.
        cluster = is_cluster(redis)
        return cls(**{
            name: Script(redis.register_script(source(name)), cluster, name in READ_ONLY)
            for name in NAMES
        })
