"""Two teams' apps on one Redis, both with a queue ``default`` (key prefix tests).
``team_a`` names its prefix in code; ``team_b`` gets it from --prefix or $CORRAL_PREFIX."""

from __future__ import annotations

from corral import App

team_a = App(prefix="team-a")
team_b = App()


@team_a.task(name="whoami")
async def whoami_a() -> str:
    return "team-a"


@team_b.task(name="whoami")
async def whoami_b() -> str:
    return "team-b"


@team_a.task(name="fail")
async def fail_a() -> None:
    raise RuntimeError("team a's task failed")


@team_b.task(name="fail")
async def fail_b() -> None:
    raise RuntimeError("team b's task failed")
