"""The worker's HTTP endpoints: /metrics, /healthz, /readyz and /debug/tasks."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from corral_worker.debug import dump_tasks

# A loop this late is alive but too slow to be trusted with leases.
MAX_HEALTHY_LAG_S = 5.0

# asyncio task -> time.monotonic() when the corral task it runs started.
RunningSince = Callable[[], Mapping["asyncio.Task[Any]", float]]


class BindError(OSError):
    """The address to serve on is taken (or not ours to bind)."""


class HttpServer:
    def __init__(
        self,
        registry: CollectorRegistry,
        loop_lag_s: Callable[[], float],
        ready: Callable[[], tuple[bool, str]],
        debug_endpoint: bool,
        running_since: RunningSince | None = None,
    ) -> None:
        self._registry = registry
        self._running_since = running_since
        self._loop_lag_s = loop_lag_s
        self._ready = ready
        self._runner: web.AppRunner | None = None
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        if debug_endpoint:
            app.router.add_get("/debug/tasks", self._debug_tasks)
        self._app = app
        self.paths = ["/metrics", "/healthz", "/readyz"] + (
            ["/debug/tasks"] if debug_endpoint else []
        )

    async def start(self, host: str, port: int) -> int:
        """Serve on ``host:port`` (0 binds a free port); returns the port. Raises
        BindError when the address cannot be bound."""
        self._runner = web.AppRunner(self._app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await self.stop()
            reason = exc.strerror or str(exc)
            raise BindError(exc.errno, f"cannot serve on {host}:{port}: {reason}") from None
        bound = self._runner.addresses[0]
        return int(bound[1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self._registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        lag_s = self._loop_lag_s()
        status = 200 if lag_s < MAX_HEALTHY_LAG_S else 503
        return web.json_response({"ok": status == 200, "loop_lag_s": round(lag_s, 4)},
                                 status=status)

    async def _readyz(self, request: web.Request) -> web.Response:
        ok, reason = self._ready()
        return web.json_response({"ok": ok, "reason": reason}, status=200 if ok else 503)

    async def _debug_tasks(self, request: web.Request) -> web.Response:
        since = self._running_since() if self._running_since else {}
        return web.Response(text=dump_tasks(running_since=since))
