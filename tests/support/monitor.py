"""Counting the commands that clients send, as Redis sees them.

INFO counts every command Redis runs, those that Lua scripts call included. Corral's
worker sends scripts (EVALSHA), each of which runs many commands inside Redis, so the
commands that Corral's scripts call are attributed to the script call that ran them:
what is counted is every script call plus every other command whose name none of the
scripts use."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from pathlib import Path

import redis.asyncio

import corral.scripts

# The scripts as the installed package ships them.
_LUA_DIR = Path(corral.scripts.__file__).parent / "_lua"
_SCRIPT_CALLS = {"evalsha", "evalsha_ro", "eval", "eval_ro", "fcall", "fcall_ro"}


def commands_inside_scripts() -> set[str]:
    names: set[str] = set()
    for source in _LUA_DIR.glob("*.lua"):
        names.update(n.lower() for n in re.findall(r"redis\.p?call\('(\w+)'", source.read_text()))
    return names


async def count_client_commands(url: str, duration_s: float) -> Counter[str]:
    inside = commands_inside_scripts()
    conn = redis.asyncio.Redis.from_url(url)
    try:
        await conn.config_resetstat()
        await asyncio.sleep(duration_s)
        stats = await conn.info("commandstats")
    finally:
        await conn.aclose()
    counts: Counter[str] = Counter()
    for key, value in stats.items():
        name = key.removeprefix("cmdstat_").lower()
        if name.startswith(("config", "info")):  # this function's own
            continue
        if name in _SCRIPT_CALLS or name not in inside:
            counts[name] = int(value["calls"])
    return counts
