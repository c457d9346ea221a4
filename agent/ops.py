"""The operator's HTTP endpoint: ``/metrics`` (Prometheus), ``/healthz`` (liveness), ``/readyz``.

Binds 127.0.0.1 by default. ``/healthz`` answers 200 whenever the event loop runs. ``/readyz`` is 200
when every sink is up and every stream completed a poll within a few intervals, 503 otherwise; the
body names each stream and sink with its state.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from agent.health import Health


class OpsServer:
    """Serves metrics and health on one address."""

    def __init__(
        self,
        registry: CollectorRegistry,
        health: Health,
        host: str,
        port: int,
        on_scrape: Callable[[], None] | None = None,
    ) -> None:
        self._registry = registry
        self._on_scrape = on_scrape
        self._health = health
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        return app

    async def start(self) -> int:
        """Start serving; return the bound port (useful with port 0)."""
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def _metrics(self, request: web.Request) -> web.Response:
        if self._on_scrape is not None:
            self._on_scrape()  # time-dependent gauges (checkpoint lag, rate-budget tokens)
        body = generate_latest(self._registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        ready, lines = self._health.report()
        return web.Response(text="\n".join(lines) + "\n", status=200 if ready else 503)
