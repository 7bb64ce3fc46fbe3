"""Least-privilege Redis users: the ACL rules a worker, a producer and the operator need
for one key prefix and a set of queues (``corral acl`` prints them).

Each rule is derived from the code, not written twice:

- the key and channel patterns from ``corral.keys.queue_keys`` (every key of a queue
  starts with its ``P:{Q}:`` prefix; channels are named one by one);
- the commands the Lua scripts run from the scripts' own text (``redis.call('X'``),
  with the prelude's helpers each script calls: Redis checks every command a script
  runs against the caller's rules, so a script's commands are the caller's too;
- the commands the clients send themselves from the lists below, which the tests
  check against what the code sends (run under these users, and counted by MONITOR).

EVALSHA with SCRIPT LOAD can run any script, so the key patterns are the boundary
between applications and queues; the command lists keep each role to what it uses.
"""

from __future__ import annotations

import enum
import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache

from corral.keys import queue_keys
from corral.scripts import NAMES, own_source, prelude_source


class Role(enum.Enum):
    WORKER = "worker"
    PRODUCER = "producer"
    OPERATOR = "operator"


class KeyAccess(enum.Enum):
    READ_WRITE = "~"
    READ_ONLY = "%R~"


# Every client: scripts by digest (EVALSHA_RO for the scripts that only read), loaded
# again after a Redis restart (NOSCRIPT); in a pipeline redis-py asks SCRIPT EXISTS first.
# SELECT for a URL naming a database, PING for health checks. redis-py's CLIENT SETINFO
# on connect may be refused (it ignores that; 7.0 does not know it).
SCRIPT_COMMANDS = ("evalsha", "evalsha_ro", "script|load", "script|exists")
CONNECTION_COMMANDS = ("ping", "select")
# A redis+cluster:// client reads the slot and command tables; shard channels there.
CLUSTER_COMMANDS = ("cluster|slots", "cluster|shards", "command")
PUBSUB_COMMANDS = ("subscribe", "unsubscribe", "ssubscribe", "sunsubscribe")


@dataclass(frozen=True, slots=True)
class RoleRules:
    scripts: tuple[str, ...]  # the Lua scripts (corral.scripts.NAMES) it calls
    commands: tuple[str, ...]  # what it sends itself, besides scripts and pub/sub
    keys: KeyAccess
    channels: tuple[str, ...]  # QueueKeys fields of the channels it uses


ROLES: dict[Role, RoleRules] = {
    # claim, finish, heartbeat, progress; listens for wake-ups and cancellations.
    Role.WORKER: RoleRules(
        scripts=("claim", "finish", "heartbeat", "progress"), commands=(),
        keys=KeyAccess.READ_WRITE,
        channels=("wake_channel", "cancel_channel", "done_channel"),
    ),
    # enqueue, status, result (waits on done), progress, cancel, inspect --queue, dlq.
    Role.PRODUCER: RoleRules(
        scripts=("enqueue", "cancel", "depths", "dlq"), commands=("hget", "hmget", "zrange"),
        keys=KeyAccess.READ_WRITE,
        channels=("wake_channel", "cancel_channel", "done_channel"),
    ),
    # Reads depths (a script that only reads) and listens for wake-ups: read-only keys.
    Role.OPERATOR: RoleRules(
        scripts=("depths",), commands=(), keys=KeyAccess.READ_ONLY,
        channels=("wake_channel",),
    ),
}

_CALL = re.compile(r"redis\.p?call\(\s*'([A-Za-z]+)'")
_FUNCTION = re.compile(r"^local function (\w+)\(")


def default_user(role: Role) -> str:
    return f"corral-{role.value}"


def _calls(text: str) -> set[str]:
    return {name.lower() for name in _CALL.findall(text)}


@cache
def _prelude_helpers() -> tuple[dict[str, str], str]:
    """The prelude's helper functions (name -> body) and its top-level code."""
    helpers: dict[str, str] = {}
    top: list[str] = []
    current: str | None = None
    for line in prelude_source().splitlines():
        match = _FUNCTION.match(line)
        if match:
            current = match.group(1)
            helpers[current] = line
            if not line.rstrip().endswith(" end"):
                continue
        elif current is not None:
            helpers[current] += "\n" + line
            if line != "end":
                continue
        else:
            top.append(line)
            continue
        current = None
    return helpers, "\n".join(top)


def script_commands(name: str) -> frozenset[str]:
    """Every command script ``name`` may run: its own, its prelude helpers' (followed
    through helpers that call helpers) and the prelude's top-level code's."""
    helpers, top = _prelude_helpers()
    seen: set[str] = set()
    pending = [own_source(name), top]
    commands: set[str] = set()
    while pending:
        text = pending.pop()
        commands |= _calls(text)
        for helper, body in helpers.items():
            if helper not in seen and re.search(rf"\b{helper}\(", text):
                seen.add(helper)
                pending.append(body)
    return frozenset(commands)


def role_commands(role: Role) -> list[str]:
    """The commands ``role`` is allowed, sorted."""
    rules = ROLES[role]
    commands = {*SCRIPT_COMMANDS, *CONNECTION_COMMANDS, *CLUSTER_COMMANDS, *PUBSUB_COMMANDS,
                *rules.commands}
    for script in rules.scripts:
        commands |= script_commands(script)
    return sorted(commands)


def acl_rules(role: Role, queues: Sequence[str], prefix: str) -> list[str]:
    """The ACL SETUSER rules of ``role`` for ``queues`` under key ``prefix``."""
    rules = ROLES[role]
    keys = [queue_keys(q, prefix) for q in dict.fromkeys(queues)]
    return [
        "reset", "on", "-@all",
        *(f"+{command}" for command in role_commands(role)),
        *(f"{rules.keys.value}{k.prefix}*" for k in keys),
        *(f"&{getattr(k, field)}" for k in keys for field in rules.channels),
    ]


def setuser_command(user: str, rules: Iterable[str]) -> str:
    """One ``ACL SETUSER`` line, quoted for redis-cli and for a shell."""
    return " ".join(shlex.quote(part) for part in ("ACL", "SETUSER", user, *rules))


def check_names(names: Iterable[str]) -> None:
    """Scripts named in ROLES must exist (a renamed script would drop its commands)."""
    unknown = set(names) - set(NAMES)
    if unknown:
        raise ValueError(f"unknown scripts {sorted(unknown)}")


check_names(s for rules in ROLES.values() for s in rules.scripts)
