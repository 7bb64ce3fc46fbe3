"""An app whose tasks declare queues of their own (for the CLI's --app)."""

from __future__ import annotations

from corral import App

app = App(result_ttl_s=600)


@app.task(name="send_mail", queue="mail")
async def send_mail(to: str = "") -> str:
    return to


@app.task(name="report", queue="reports")
async def report() -> str:
    return "done"
