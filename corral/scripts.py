"""The Lua scripts that change queue state atomically, loaded once per client."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from corral.connection import is_cluster

_NAMES = ("enqueue", "claim", "finish", "heartbeat", "cancel", "depths", "dlq", "progress")


ScriptCall = tuple[AsyncScript, Sequence[Any], Sequence[Any]]  # script, keys, args


async def call_many(redis: Redis, calls: Sequence[ScriptCall]) -> list[Any]:
    """Several script calls in one pipelined round trip. Redis Cluster refuses scripts
    in pipelines, so there they are sent one after another (one at a time also keeps
    within a small connection pool, which redis-py's cluster client does not wait for)."""
    if is_cluster(redis):
        return [await script(keys=keys, args=args) for script, keys, args in calls]
    async with redis.pipeline(transaction=False) as pipe:
        for script, keys, args in calls:
            await script(keys=keys, args=args, client=pipe)
        return list(await pipe.execute())


def _source(name: str) -> str:
    return (Path(__file__).parent / "_lua" / f"{name}.lua").read_text()


@dataclass(frozen=True, slots=True)
class Scripts:
    enqueue: AsyncScript
    claim: AsyncScript
    finish: AsyncScript
    heartbeat: AsyncScript
    cancel: AsyncScript
    depths: AsyncScript
    dlq: AsyncScript
    progress: AsyncScript

    @classmethod
    def register(cls, redis: Redis) -> Scripts:
        # register_script sends EVALSHA and loads the script on NOSCRIPT, so a
        # restarted Redis (with an empty script cache) needs nothing special.
        return cls(**{name: redis.register_script(_source(name)) for name in _NAMES})
