"""The dashboard's HTTP server: pages, the JSON API under /api/, and the actions."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import quote

from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisError

from corral.admin import dead_tasks, dlq_change, known_queues
from corral.client import Client
from corral.connection import redact
from corral.depths import QueueDepth, read_queue_depths
from corral.keys import DEFAULT_PREFIX, validate_queue_name
from corral.schedules import registered
from corral_dashboard import render
from corral_dashboard.data import dead_json, find_task, workers_of
from corral_dashboard.sampler import Sampler
from corral_dashboard.security import (
    CSRF_COOKIE,
    CSRF_FIELD,
    SESSION_COOKIE,
    Guard,
    new_csrf_token,
)

log = logging.getLogger("corral.dashboard")
STATIC = Path(__file__).parent / "static"
MAX_DLQ_LIMIT = 1_000
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Settings:
    redis_url: str
    host: str = "127.0.0.1"
    port: int = 8000
    # The token that allows actions; None keeps the dashboard read-only.
    token: str | None = None
    grafana_url: str | None = None
    # Queues to show; empty: every queue found in Redis (by SCAN, redone at most every
    # rescan_s seconds, since it walks every key).
    queues: tuple[str, ...] = ()
    rescan_s: float = 30.0
    sample_s: float = 5.0
    # Marks the cookies Secure; set it when the dashboard is served over HTTPS.
    secure_cookies: bool = False
    # The application's key prefix: the dashboard shows and changes its queues only.
    prefix: str = DEFAULT_PREFIX


class Dashboard:
    def __init__(self, settings: Settings, redis: Redis) -> None:
        self.settings = settings
        self.guard = Guard(settings.token)
        self.redis = redis
        self.client = Client(redis, prefix=settings.prefix)
        self.sampler = Sampler(redis, self._depths, settings.sample_s, settings.prefix)
        self._queues: list[str] = list(settings.queues)
        self._scanned_at_s: float | None = None
        self._runner: web.AppRunner | None = None
        self.app = self._build_app()

    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._errors, self._csrf_cookie])
        app.on_response_prepare.append(_secure_headers)
        get, post = app.router.add_get, app.router.add_post
        get("/", self.queues_page)
        get("/workers", self.workers_page)
        get("/tasks", self.task_page)
        get("/dlq", self.dlq_page)
        post("/login", self.login)
        post("/logout", self.logout)
        post("/actions/dlq", self.dlq_action)
        post("/actions/cancel", self.cancel_action)
        get("/api/queues", self.api_queues)
        get("/api/workers", self.api_workers)
        get("/api/tasks/{id}", self.api_task)
        get("/api/dlq", self.api_dlq)
        post("/api/dlq/{queue}/{op}", self.api_dlq_change)
        post("/api/tasks/{id}/cancel", self.api_cancel)
        get("/healthz", self.healthz)
        app.router.add_static("/static", STATIC, show_index=False)
        return app

    async def start(self) -> str:
        """Serve, and return the dashboard's URL."""
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.host, self.settings.port,
                           reuse_address=True)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.sampler.start()
        shown = f"[{host}]" if ":" in str(host) else host
        return f"http://{shown}:{port}/"

    async def stop(self) -> None:
        await self.sampler.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.client.close()

    # -- data ------------------------------------------------------------------

    async def queue_names(self) -> list[str]:
        if self.settings.queues:
            return list(self.settings.queues)
        now_s = time.monotonic()
        if self._scanned_at_s is None or now_s - self._scanned_at_s >= self.settings.rescan_s:
            self._queues = await known_queues(self.redis, prefix=self.settings.prefix)
            self._scanned_at_s = now_s
        return self._queues

    async def _depths(self) -> dict[str, QueueDepth]:
        names = await self.queue_names()
        return await read_queue_depths(self.redis, names, prefix=self.settings.prefix) \
            if names else {}

    def view(self, request: web.Request) -> render.View:
        return render.View(
            redis_url=redact(self.settings.redis_url),
            grafana_url=self.settings.grafana_url,
            actions=self.guard.actions_allowed,
            signed_in=self.guard.signed_in(request.cookies),
            csrf=request.get("csrf", ""),
            now_ms=int(time.time() * 1000),
        )

    # -- middleware ------------------------------------------------------------

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except RedisError as exc:
            text = f"Redis at {redact(self.settings.redis_url)} failed: {type(exc).__name__}"
            log.warning("dashboard: %s %s: %s", request.method, request.path, exc)
            return self._fail(request, 503, "Redis unavailable", text)

    @web.middleware
    async def _csrf_cookie(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        csrf = request.cookies.get(CSRF_COOKIE, "")
        fresh = not csrf or len(csrf) > 100
        if fresh:
            csrf = new_csrf_token()
        request["csrf"] = csrf
        response = await handler(request)
        if fresh:
            self._set_cookie(response, CSRF_COOKIE, csrf)
        return response

    def _set_cookie(self, response: web.StreamResponse, name: str, value: str) -> None:
        response.set_cookie(name, value, httponly=True, samesite="Strict", path="/",
                            secure=self.settings.secure_cookies)

    def _fail(self, request: web.Request, status: int, title: str, text: str) -> web.Response:
        if request.path.startswith("/api/"):
            return web.json_response({"error": text}, status=status)
        return web.Response(text=render.message_page(self.view(request), title, text),
                            status=status, content_type="text/html")

    # -- pages -----------------------------------------------------------------

    async def queues_page(self, request: web.Request) -> web.Response:
        depths = await self._depths()
        series = {name: self.sampler.history.series(name) for name in depths}
        return _html(render.queues_page(self.view(request), depths, series))

    async def workers_page(self, request: web.Request) -> web.Response:
        workers = workers_of((await self._depths()).values())
        return _html(render.workers_page(self.view(request), workers))

    async def task_page(self, request: web.Request) -> web.Response:
        task_id = request.query.get("id", "").strip()
        record = await find_task(self.redis, task_id, await self.queue_names(),
                                 self.settings.prefix) \
            if task_id else None
        message, ok = _cancel_notice(request.query.get("cancelled"))
        return _html(render.task_page(self.view(request), task_id, record, message, ok))

    async def dlq_page(self, request: web.Request) -> web.Response:
        names = await self.queue_names()
        queue = request.query.get("queue") or (names[0] if names else "default")
        try:
            validate_queue_name(queue)
        except ValueError as exc:
            return self._fail(request, 400, "Bad queue", str(exc))
        limit = _limit(request.query.get("limit"))
        tasks = await dead_tasks(self.redis, queue, limit, prefix=self.settings.prefix)
        total = (await read_queue_depths(self.redis, [queue],
                                         prefix=self.settings.prefix))[queue].dead
        message = _dlq_notice(request.query.get("done"), request.query.get("n"))
        return _html(render.dlq_page(self.view(request), names or [queue], queue, tasks,
                                     total, message))

    # -- sign-in and actions ---------------------------------------------------

    async def login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        refusal = self.guard.sign_in_refusal(request.cookies, _field(form, CSRF_FIELD),
                                             _field(form, "token"))
        if refusal:
            log.warning("dashboard: sign-in refused from %s: %s", request.remote, refusal)
            return self._fail(request, 403, "Refused", refusal)
        response = _redirect("/")
        self._set_cookie(response, SESSION_COOKIE, self.guard.session_for(request["csrf"]))
        return response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        response = _redirect("/")
        response.del_cookie(SESSION_COOKIE, path="/")
        return response

    async def _refused(self, request: web.Request, form_csrf: str) -> web.Response | None:
        refusal = self.guard.refusal(request.headers, request.cookies, form_csrf)
        if refusal is None:
            return None
        log.warning("dashboard: %s %s refused: %s", request.method, request.path, refusal)
        return self._fail(request, 403, "Refused", refusal)

    async def dlq_action(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        refused = await self._refused(request, _field(form, CSRF_FIELD))
        if refused:
            return refused
        queue, op = _field(form, "queue"), _field(form, "op")
        ids = [str(v) for v in form.getall("id", [])]
        try:
            count = await self._dlq_change(queue, op, ids, _field(form, "all") == "yes")
        except ValueError as exc:
            return self._fail(request, 400, "Bad request", str(exc))
        log.info("dashboard: %s %d dead tasks of %s", op, count, queue)
        return _redirect(f"/dlq?queue={quote(queue, safe='')}&done={op}&n={count}")

    async def _dlq_change(self, queue: str, op: str, ids: list[str], every: bool) -> int:
        validate_queue_name(queue)
        if op not in ("requeue", "purge"):
            raise ValueError(f"unknown operation {op!r}: use requeue or purge")
        # No ids means the whole queue to the core: that must be asked for by name.
        if not ids and not every:
            raise ValueError("name the task ids, or ask for all of them")
        if ids and every:
            raise ValueError("give task ids or all, not both")
        return await dlq_change(self.redis, queue, cast(Literal["requeue", "purge"], op), ids,
                                prefix=self.settings.prefix)

    async def cancel_action(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        refused = await self._refused(request, _field(form, CSRF_FIELD))
        if refused:
            return refused
        task_id, queue = _field(form, "id"), _field(form, "queue")
        try:
            done = await self.client.cancel(task_id, queue=queue)
        except ValueError as exc:
            return self._fail(request, 400, "Bad request", str(exc))
        log.info("dashboard: cancel %s in %s: %s", task_id, queue, done)
        return _redirect(f"/tasks?id={quote(task_id, safe='')}"
                                f"&cancelled={'yes' if done else 'no'}")

    # -- the JSON API ----------------------------------------------------------

    async def api_queues(self, request: web.Request) -> web.Response:
        depths = await self._depths()
        now_ms = time.time_ns() // 1_000_000
        out = {}
        for name, depth in depths.items():
            # The shape of `corral inspect --json`, with the throughput history.
            found = await registered(self.redis, name, prefix=self.settings.prefix)
            schedules = [entry.to_json(now_ms) for entry in found]
            out[name] = depth.to_json() | {"schedules": schedules, "throughput": [
                {"at_s": s.at_s, "finished": s.finished,
                 "finished_per_s": round(s.finished_per_s, 3),
                 "backlog": s.backlog}
                for s in self.sampler.history.series(name)
            ]}
        return web.json_response(out)

    async def api_workers(self, request: web.Request) -> web.Response:
        workers = workers_of((await self._depths()).values())
        return web.json_response({"workers": [w.json() for w in workers]})

    async def api_task(self, request: web.Request) -> web.Response:
        task_id = request.match_info["id"]
        record = await find_task(self.redis, task_id, await self.queue_names(),
                                 self.settings.prefix)
        if record is None:
            return web.json_response({"error": f"no task {task_id} in any queue"}, status=404)
        return web.json_response(record.json())

    async def api_dlq(self, request: web.Request) -> web.Response:
        queue = request.query.get("queue", "default")
        try:
            validate_queue_name(queue)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        tasks = await dead_tasks(self.redis, queue, _limit(request.query.get("limit")),
                                 prefix=self.settings.prefix)
        total = (await read_queue_depths(self.redis, [queue],
                                         prefix=self.settings.prefix))[queue].dead
        return web.json_response({"queue": queue, "dead": total,
                                  "tasks": [dead_json(t) for t in tasks]})

    async def api_dlq_change(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        refused = await self._refused(request, "")
        if refused:
            return refused
        ids, every = body.get("ids", []), body.get("all", False)
        if not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids):
            return web.json_response({"error": "ids must be a list of task ids"}, status=400)
        if not isinstance(every, bool):
            return web.json_response({"error": "all must be true or false"}, status=400)
        op = request.match_info["op"]
        try:
            count = await self._dlq_change(request.match_info["queue"], op, ids, every)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"op": op, "count": count})

    async def api_cancel(self, request: web.Request) -> web.Response:
        refused = await self._refused(request, "")
        if refused:
            return refused
        task_id = request.match_info["id"]
        record = await find_task(self.redis, task_id, await self.queue_names(),
                                 self.settings.prefix)
        if record is None:
            return web.json_response({"error": f"no task {task_id} in any queue"}, status=404)
        done = await self.client.cancel(task_id, queue=record.queue)
        return web.json_response({"id": task_id, "queue": record.queue, "cancelled": done})

    async def healthz(self, request: web.Request) -> web.Response:
        await self.redis.ping()
        return web.json_response({"ok": True})


async def _secure_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(_SECURITY_HEADERS)


def _redirect(location: str) -> web.Response:
    """A 303 after a form post, returned (not raised) so it can carry cookies."""
    return web.Response(status=303, headers={"Location": location})


def _html(text: str) -> web.Response:
    return web.Response(text=text, content_type="text/html")


def _field(form: Any, name: str) -> str:
    value = form.get(name, "")
    return value if isinstance(value, str) else ""


def _limit(text: str | None) -> int:
    try:
        return max(1, min(MAX_DLQ_LIMIT, int(text or 100)))
    except ValueError:
        return 100


async def _json_body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="body must be JSON") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object")
    return body


def _dlq_notice(op: str | None, n: str | None) -> str | None:
    if op not in ("requeue", "purge") or n is None or not n.isdigit():
        return None
    verb = "Requeued" if op == "requeue" else "Purged"
    return f"{verb} {n} task{'s' if n != '1' else ''}."


def _cancel_notice(value: str | None) -> tuple[str | None, bool]:
    if value == "yes":
        return "Cancelled.", True
    if value == "no":
        return "Not cancelled: the task is unknown or already finished.", False
    return None, True
