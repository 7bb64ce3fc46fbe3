"""The soak benchmark's task (bench/soak.py): a no-op that returns a small result,
kept for ``$CORRAL_SOAK_RESULT_TTL_S`` seconds like any result."""

from __future__ import annotations

import os

import corral

app = corral.App(result_ttl_s=float(os.environ.get("CORRAL_SOAK_RESULT_TTL_S", "60")))


@app.task(name="soak.work")
async def work(n: int, note: str) -> dict[str, int]:
    return {"n": n, "length": len(note)}


@app.task(name="soak.echo")
async def echo(n: int, note: str) -> list[object]:
    """Returns its arguments: a result as large as the payload (bench/record_cost.py)."""
    return [n, note]


@app.task(name="soak.fail", retries=0)
async def fail(n: int, note: str) -> None:
    raise ValueError("dead on purpose")
