"""The Lua scripts that change queue state atomically, loaded once per client.

Each script is the defaults below, then ``_lua/prelude.lua`` (the key layout, the
priority clamp, Redis's clock in ms, publishing, retention, the attempt history: the
rules every script shares, written once), then the script's own text. Every call
passes the queue's keys first (``QueueKeys.script_keys``) and the record keys the
caller knows after them; ARGV[1] says whether the client talks to a Redis Cluster
(shard channels)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript

from corral.connection import is_cluster
from corral.defaults import ATTEMPTS_KEPT
from corral.keys import QueueKeys
from corral.retention import DEFAULT_DEAD_TTL_S, DEFAULT_RESULT_TTL_S

NAMES = ("enqueue", "claim", "finish", "heartbeat", "cancel", "depths", "dlq", "progress")
_LUA = Path(__file__).parent / "_lua"


class Script:
    """One registered script, called with a queue's keys and the caller's own."""

    __slots__ = ("_flag", "script")

    def __init__(self, script: AsyncScript, cluster: bool) -> None:
        self.script = script
        self._flag = "1" if cluster else "0"

    async def __call__(
        self,
        queue: QueueKeys,
        records: Sequence[str] = (),
        args: Sequence[Any] = (),
        client: Redis | Pipeline | None = None,
    ) -> Any:
        return await self.script(
            keys=[*queue.script_keys, *records], args=[self._flag, *args], client=client
        )


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
        return list(await pipe.execute())


@cache
def source(name: str) -> str:
    """The full text sent to Redis for script ``name``."""
    defaults = (
        "-- Defaults, from corral/retention.py.\n"
        f"local DEFAULT_RESULT_TTL_MS = {int(DEFAULT_RESULT_TTL_S * 1000)}\n"
        f"local DEFAULT_DEAD_TTL_MS = {int(DEFAULT_DEAD_TTL_S * 1000)}\n"
        "-- From corral/defaults.py.\n"
        f"local ATTEMPTS_KEPT = {ATTEMPTS_KEPT}\n"
    )
    own = (_LUA / f"{name}.lua").read_text()
    # The defaults first: the prelude's functions read some of them.
    return f"{defaults}\n{(_LUA / 'prelude.lua').read_text()}\n-- {name}.lua\n{own}"


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

    @classmethod
    def register(cls, redis: Redis) -> Scripts:
        # register_script sends EVALSHA and loads the script on NOSCRIPT, so a
        # restarted Redis (with an empty script cache) needs nothing special.
        cluster = is_cluster(redis)
        return cls(**{
            name: Script(redis.register_script(source(name)), cluster) for name in NAMES
        })
