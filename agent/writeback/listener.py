"""A hardened listener for an aiohttp application: connection cap, header and request deadlines, TLS.

aiohttp parses HTTP (with its limits on the request line and header sizes); what it does not bound
is done here, per TCP connection, before aiohttp sees a byte:

* **connection cap** — at most ``max_connections`` open at once; a connection beyond it is closed as
  soon as it is accepted (before any TLS handshake), and counted;
* **header deadline** — a connection must complete its TLS handshake and deliver a request line and
  headers within ``header_timeout_secs``, or it is aborted (slowloris). There is no keep-alive (each
  answer closes its connection), so this is also the idle limit;
* **request deadline** — once the handler runs it has ``request_timeout_secs`` (plus one second of
  grace for the answer) before the connection is aborted; the handler bounds its own body read to
  answer 408 first;
* **TLS** — the handshake (``loop.start_tls``) runs only for admitted connections; with a client CA
  the context requires a client certificate (mutual TLS).

The application marks a request as started with ``Listener.started(request)`` (a middleware).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable

from aiohttp import web

log = logging.getLogger(__name__)

GRACE_SECS = 1.0


def server_tls_context(cert_file: str, key_file: str, client_ca_file: str | None) -> ssl.SSLContext:
    """TLS 1.2+ server context; with ``client_ca_file`` a client certificate is required."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_file, key_file)
    if client_ca_file:
        ctx.load_verify_locations(cafile=client_ca_file)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class _Connection(asyncio.Protocol):
    """One accepted connection: admission, TLS upgrade, deadlines; then aiohttp's protocol inside."""

    def __init__(self, owner: Listener) -> None:
        self._owner = owner
        self._inner: asyncio.Protocol | None = None
        self._raw: asyncio.Transport | None = None
        self._app: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._handshake: asyncio.Task[None] | None = None
        self._admitted = False
        #: Bytes the TLS layer handed over before ``start_tls`` returned (the client does not wait).
        self._early: list[bytes] = []

    # -- admission and deadlines ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._raw = transport
        owner = self._owner
        if len(owner.open) >= owner.max_connections:
            owner.on_refused("connection_cap")
            transport.abort()
            return
        self._admitted = True
        owner.open.add(self)
        self._timer = owner.loop.call_later(owner.header_timeout, self._expire, "header_timeout")
        if owner.tls is None:
            self._attach(transport)
        else:
            self._handshake = owner.loop.create_task(self._upgrade(transport, owner.tls))

    async def _upgrade(self, raw: asyncio.Transport, ctx: ssl.SSLContext) -> None:
        try:
            tls = await self._owner.loop.start_tls(
                raw,
                self,
                ctx,
                server_side=True,
                ssl_handshake_timeout=self._owner.header_timeout,
            )
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError, RuntimeError) as exc:
            log.debug("Write-back TLS handshake failed.", extra={"error": repr(exc)[:200]})
            raw.abort()
            self._release()
            return
        if tls is None:  # pragma: no cover - closed during the handshake
            self._release()
            return
        self._attach(tls)

    def _attach(self, transport: asyncio.Transport) -> None:
        self._app = transport
        self._owner.by_transport[transport] = self
        self._inner = self._owner.server()
        self._inner.connection_made(transport)
        early, self._early = self._early, []
        for data in early:
            self._inner.data_received(data)

    def _expire(self, reason: str) -> None:
        self._owner.on_refused(reason)
        for transport in (self._app, self._raw):
            if transport is not None:
                transport.abort()
        if self._app is None and self._handshake is None:
            self._release()

    def started(self) -> None:
        """The request's headers arrived: switch from the header to the request deadline."""
        if self._timer is not None:
            self._timer.cancel()
        owner = self._owner
        self._timer = owner.loop.call_later(
            owner.request_timeout + GRACE_SECS, self._expire, "request_timeout"
        )

    def _release(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._owner.open.discard(self)
        if self._app is not None:
            self._owner.by_transport.pop(self._app, None)

    def close(self) -> None:
        for transport in (self._app, self._raw):
            if transport is not None:
                transport.abort()

    # -- everything else goes to aiohttp --------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.data_received(data)
        elif sum(map(len, self._early)) < 65536:  # only a request line and headers can be early
            self._early.append(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._admitted:
            return
        if self._handshake is not None and self._app is None:
            return  # the handshake task sees it fail and releases
        self._release()
        if self._inner is not None:
            self._inner.connection_lost(exc)


class Listener:
    """Serves ``app`` on ``host:port`` with the limits above. ``start`` returns the bound port."""

    def __init__(
        self,
        app: web.Application,
        host: str,
        port: int,
        *,
        tls: ssl.SSLContext | None,
        max_connections: int,
        header_timeout: float,
        request_timeout: float,
        on_refused: Callable[[str], None] = lambda reason: None,
    ) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.request_timeout = request_timeout
        self.on_refused = on_refused
        self.open: set[_Connection] = set()
        self.by_transport: dict[asyncio.BaseTransport, _Connection] = {}
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, max_line_size=8190, max_field_size=8190
        )
        self._server: asyncio.Server | None = None
        self.loop: asyncio.AbstractEventLoop  # set by start()

    def server(self) -> asyncio.Protocol:
        """A fresh aiohttp request handler (its connection's protocol)."""
        factory = self._runner.server
        assert factory is not None
        return factory()

    async def start(self) -> int:
        """Listen; return the bound port (useful with port 0). Raises ``OSError``."""
        self.loop = asyncio.get_running_loop()
        await self._runner.setup()
        self._server = await self.loop.create_server(lambda: _Connection(self), self.host, self.port)
        sockets = self._server.sockets or ()
        if sockets:
            self.port = sockets[0].getsockname()[1]
        return self.port

    def started(self, request: web.BaseRequest) -> None:
        """Called by the application when a request's handler starts."""
        conn = self.by_transport.get(request.transport) if request.transport is not None else None
        if conn is not None:
            conn.started()

    async def stop(self) -> None:
        """Stop accepting, drop open connections, release aiohttp's handlers."""
        if self._server is not None:
            self._server.close()
        for conn in list(self.open):
            conn.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
        await self._runner.cleanup()
