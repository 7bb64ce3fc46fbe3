"""Tasks with their own retention settings (tests/integration/test_retention.py)."""

from __future__ import annotations

from corral import App

app = App(result_ttl_s=30, dead_ttl_s=120, max_dead=5)


@app.task(name="kept")
async def kept() -> str:
    return "result"


@app.task(name="keep_nothing", result_ttl=0)
async def keep_nothing() -> str:
    return "gone"


@app.task(name="boom")
async def boom() -> None:
    raise ValueError("boom")


@app.task(name="boom_short", dead_ttl=5)
async def boom_short() -> None:
    raise ValueError("boom")


@app.task(name="fail_keep_nothing", dead_letter=False, result_ttl=0)
async def fail_keep_nothing() -> None:
    raise ValueError("no trace")
