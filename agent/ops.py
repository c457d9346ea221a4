"""The operator's HTTP endpoint: ``/metrics`` (Prometheus), ``/healthz`` (liveness), ``/readyz``.

Binds 127.0.0.1 by default. ``/healthz`` answers 200 whenever the event loop runs. ``/readyz`` is 200
when every sink is up and every stream completed a poll within a few intervals, 503 otherwise; the
body names each stream and sink with its state (a down sink with its last error).

The port cannot exhaust the agent's file descriptors (which would stop the checkpoint from being
written): at most ``MAX_CONNECTIONS`` connections are open at once; a connection must finish its
request headers within ``HEADER_TIMEOUT_SECS`` and is closed after ``MAX_LIFETIME_SECS`` whatever it
does (an idle keep-alive one after ``KEEPALIVE_SECS``). When all slots are taken, a new connection
evicts the oldest one that has not sent a complete request yet (idle or slow-header clients), or is
closed at once when every slot is serving a request. Requests are served by aiohttp; a thin protocol
wrapper (``_Guard``) around aiohttp's own does the counting and the deadlines.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

from agent.health import Health

log = logging.getLogger(__name__)

#: Connections open at once on the ops port.
MAX_CONNECTIONS = 32
#: Pending connections the kernel queues, and what asyncio accepts in one go before any is counted:
#: kept small, so a burst cannot take many descriptors before eviction runs.
ACCEPT_BACKLOG = 16
#: Seconds from accept to the end of the first request's headers.
HEADER_TIMEOUT_SECS = 5.0
#: Seconds a connection may live, whatever it does (a slow reader of ``/metrics`` included).
MAX_LIFETIME_SECS = 60.0
#: Seconds an idle keep-alive connection is kept after a response.
KEEPALIVE_SECS = 5.0


class _Guard(asyncio.Protocol):
    """Wraps aiohttp's request handler: registers with the pool, enforces the deadlines."""

    def __init__(self, inner: Any, pool: _Pool) -> None:
        self._inner = inner
        self._pool = pool
        self.transport: asyncio.Transport | None = None
        #: Whether a complete request head arrived; until then the connection may be evicted.
        self.requested = False
        self._tail = b""
        self._timers: list[asyncio.TimerHandle] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        loop = asyncio.get_running_loop()
        self._timers = [
            loop.call_later(HEADER_TIMEOUT_SECS, self._header_deadline),
            loop.call_later(MAX_LIFETIME_SECS, self.close),
        ]
        self._inner.connection_made(transport)
        self._pool.admit(self)

    def data_received(self, data: bytes) -> None:
        if not self.requested:
            window = self._tail + data
            if b"\r\n\r\n" in window or b"\n\n" in window:
                self.requested = True
                self._pool.requested(self)
            self._tail = window[-3:]
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        result: bool | None = self._inner.eof_received()
        return result

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in self._timers:
            timer.cancel()
        self._pool.release(self)
        self._inner.connection_lost(exc)

    def _header_deadline(self) -> None:
        if not self.requested:
            self._pool.refused("header_timeout")
            self.close()

    def close(self) -> None:
        """Drop the connection now (no lingering: the descriptor is freed at once)."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()


class _Pool:
    """The connections open on the ops port, oldest first."""

    def __init__(self, limit: int, refused: Counter) -> None:
        self.limit = limit
        self._waiting: OrderedDict[int, _Guard] = OrderedDict()  # no complete request yet
        self._serving: dict[int, _Guard] = {}
        self._refused = refused

    def refused(self, reason: str) -> None:
        """Count a connection closed by the guard (``connection_cap``, ``header_timeout``)."""
        self._refused.labels(reason).inc()

    def __len__(self) -> int:
        return len(self._waiting) + len(self._serving)

    def admit(self, conn: _Guard) -> None:
        if len(self) >= self.limit:
            self.refused("connection_cap")
            if self._waiting:  # make room: the oldest connection without a complete request goes
                _, oldest = self._waiting.popitem(last=False)
                oldest.close()
            else:
                conn.close()
                return
        self._waiting[id(conn)] = conn

    def requested(self, conn: _Guard) -> None:
        if self._waiting.pop(id(conn), None) is not None:
            self._serving[id(conn)] = conn

    def release(self, conn: _Guard) -> None:
        self._waiting.pop(id(conn), None)
        self._serving.pop(id(conn), None)


class OpsServer:
    """Serves metrics and health on one address."""

    def __init__(
        self,
        registry: CollectorRegistry,
        health: Health,
        host: str,
        port: int,
        on_scrape: Callable[[], None] | None = None,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self._registry = registry
        self._on_scrape = on_scrape
        self._health = health
        self.host = host
        self.port = port
        refused = Counter(
            "siem_agent_ops_connections_refused_total",
            "Ops port connections closed by its guard, by reason (connection_cap: evicted or refused "
            "at the cap; header_timeout: no complete request head in time).",
            ["reason"],
            registry=registry,
        )
        self.pool = _Pool(max_connections, refused)
        self._runner: web.AppRunner | None = None
        self._server: asyncio.Server | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        return app

    async def start(self) -> int:
        """Start serving; return the bound port (useful with port 0). Raises ``OSError``."""
        runner = web.AppRunner(self.app(), access_log=None, keepalive_timeout=KEEPALIVE_SECS)
        await runner.setup()
        handler = runner.server
        assert handler is not None
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(
                lambda: _Guard(handler(), self.pool),
                self.host,
                self.port,
                reuse_address=True,
                backlog=ACCEPT_BACKLOG,
            )
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.shutdown()
            await runner.cleanup()
        if server is not None:
            await server.wait_closed()

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
