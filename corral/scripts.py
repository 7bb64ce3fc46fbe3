"""The Lua scripts that change queue state atomically, loaded once per client."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

_NAMES = ("enqueue", "claim", "finish", "heartbeat", "cancel", "depths", "dlq")


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

    @classmethod
    def register(cls, redis: Redis) -> Scripts:
        # register_script sends EVALSHA and loads the script on NOSCRIPT, so a
        # restarted Redis (with an empty script cache) needs nothing special.
        return cls(**{name: redis.register_script(_source(name)) for name in _NAMES})
