"""Syslog over TCP (RFC 6587 octet counting or LF framing) and over TLS (RFC 5425).

Delivery, and its limit. A successful ``write``/``drain`` only means the bytes reached the local
kernel; a receiver that resets the connection loses everything still queued. So ``send`` returns
only when the kernel reports the socket's send queue empty — ``SIOCOUTQ`` (``TIOCOUTQ``) counts the
bytes the peer's TCP has not acknowledged yet — and the connection is still ``ESTABLISHED``
(``TCP_INFO``); the whole wait is bounded by ``timeout_secs``.

The batch being sent is the replay window (bounded by the runner's ``batch.max_bytes``): while
waiting, the sink tracks how many of its bytes the peer's TCP has acknowledged. If the connection
breaks or the wait times out, the connection is dropped and what is not known to be acknowledged
goes back to the runner, which re-sends it on a new connection: on plain TCP, when the peer reset
or closed the connection, every message after the last fully acknowledged one
(``SendResult.retry``); otherwise the whole batch (``TransientSinkError``) — over TLS, whose record
bytes do not map to messages, and after a timeout, where our own reset makes the receiver's kernel
discard what its process had not read. The receiver may thus see part of a batch twice
(at-least-once), never lose a byte its TCP did not acknowledge. Batches are not pipelined:
docs/sinks.md has the measurement behind that choice.

What remains unprotected: bytes the receiver's TCP acknowledged but the receiver process never read
or wrote (it crashed, or was killed with data in its socket buffer). Plain TCP cannot tell; only an
application-level acknowledgement can (the ``relp`` sink). On platforms without ``TIOCOUTQ`` and
``TCP_INFO`` (non-Linux) the check degrades to "written to the kernel". With TLS 1.3 a server that
refuses our client certificate says so only after the handshake, so the first batch on such a
connection can be TCP-acknowledged and then discarded; the next send fails. Use ``min_version``
and the receiver's logs when setting up mutual TLS.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import fcntl
import itertools
import logging
import socket
import ssl
import struct
import termios
from collections.abc import Sequence
from typing import Any

from agent.codecs import build_framer
from agent.errors import TransientSinkError
from agent.model import Event
from agent.sinks.base import SendResult, SinkContext
from agent.sinks.config import TcpSinkConfig
from agent.sinks.tls import client_context

log = logging.getLogger(__name__)

_TIOCOUTQ: int = getattr(termios, "TIOCOUTQ", 0x5411)
_TCP_INFO: int | None = getattr(socket, "TCP_INFO", None)
_TCP_STATES = {1: "established", 4: "fin_wait1", 5: "fin_wait2", 7: "close", 8: "close_wait", 9: "last_ack"}
_ESTABLISHED = 1
_POLL_MAX_SECS = 0.05


def unacked_bytes(sock: Any) -> int:
    """Bytes written to ``sock`` that the peer's TCP has not acknowledged (Linux ``SIOCOUTQ``)."""
    buf = fcntl.ioctl(sock.fileno(), _TIOCOUTQ, b"\0\0\0\0")
    return int(struct.unpack("i", buf)[0])


def tcp_state(sock: Any) -> int | None:
    """The kernel's TCP state of ``sock`` (1 = established), or ``None`` where unsupported."""
    if _TCP_INFO is None:
        return None
    return int(sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 1)[0])


async def open_stream(
    host: str, port: int, ssl_ctx: ssl.SSLContext | None, server_name: str | None, timeout: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect (TLS if ``ssl_ctx``) with keepalive on; raise ``TransientSinkError`` on any failure."""
    peer = f"{host}:{port}"
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                host,
                port,
                ssl=ssl_ctx,
                server_hostname=server_name if ssl_ctx else None,
                limit=2**16,
            )
    except TimeoutError:
        raise TransientSinkError(f"connect to {peer} timed out") from None
    except (OSError, ssl.SSLError) as exc:
        raise TransientSinkError(f"connect to {peer} failed: {_describe(exc)}") from None
    sock = writer.transport.get_extra_info("socket")
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    return reader, writer


class TcpSink:
    """Frames each payload and writes the batch on one connection; see the module docstring."""

    def __init__(self, config: TcpSinkConfig, ctx: SinkContext) -> None:
        self.name = config.name
        self._cfg = config
        self._m = ctx.metrics
        self._framer = build_framer(config.framing)
        self._ssl: ssl.SSLContext | None = None
        self._server_name: str | None = None
        if config.tls is not None:
            self._ssl = client_context(config.tls, config.name)
            self._server_name = config.tls.server_name or config.host
        self._writer: asyncio.StreamWriter | None = None
        self._peer = f"{config.host}:{config.port}"
        self._connected_before = False
        self._g_events = self._m.sink_unacked_events.labels(self.name)
        self._g_bytes = self._m.sink_unacked_bytes.labels(self.name)
        #: End offset of each message of the batch in flight, and how many of its bytes the
        #: peer's TCP is known to have acknowledged (plain TCP only; 0 over TLS).
        self._ends: list[int] = []
        self._acked_bytes = 0

    async def start(self) -> None:
        if self._writer is None:  # starting a connected sink must not leak its connection
            await self._connect()

    async def healthcheck(self) -> None:
        """Connect (and complete the TLS handshake) unless a usable connection is open; keep it."""
        if self._writer is not None and not self._usable(self._writer):
            self._drop("disconnect")
        await self.start()

    async def _connect(self) -> asyncio.StreamWriter:
        try:
            _, writer = await open_stream(
                self._cfg.host, self._cfg.port, self._ssl, self._server_name, self._cfg.connect_timeout_secs
            )
        except TransientSinkError:
            self._m.sink_connections.labels(self.name, "error").inc()
            raise
        self._m.sink_connections.labels(self.name, "connect").inc()
        if self._connected_before:
            self._m.sink_reconnects.labels(self.name).inc()
        self._connected_before = True
        log.info("Connected.", extra={"sink": self.name, "peer": self._peer, "tls": self._ssl is not None})
        self._writer = writer
        return writer

    def _usable(self, writer: asyncio.StreamWriter) -> bool:
        """False when the peer closed or reset the connection while we were idle."""
        if writer.transport.is_closing():
            return False
        try:
            state = tcp_state(writer.transport.get_extra_info("socket"))
        except OSError:
            return False
        return state is None or state == _ESTABLISHED

    async def send(self, events: Sequence[Event]) -> SendResult:
        frames = [self._framer.frame(e.payload) for e in events]
        self._ends = list(itertools.accumulate(len(f) for f in frames))
        self._acked_bytes = 0
        data = b"".join(frames)
        writer = self._writer
        if writer is not None and not self._usable(writer):
            self._drop("disconnect")
            writer = None
        if writer is None:
            writer = await self._connect()
        try:
            async with asyncio.timeout(self._cfg.timeout_secs):
                writer.write(data)
                self._gauge(len(data))
                await writer.drain()
                await self._acknowledged(writer)
        except TimeoutError:
            # We reset the connection ourselves, and a reset makes the receiver's kernel discard
            # what its process had not read yet: nothing of the batch can count as delivered.
            self._acked_bytes = 0
            return self._broken(
                f"{self._peer} did not acknowledge the batch within {self._cfg.timeout_secs}s"
            )
        except (OSError, ssl.SSLError) as exc:
            return self._broken(f"connection to {self._peer} broke: {_describe(exc)}")
        except asyncio.CancelledError:
            # A frame may be half written: the connection cannot carry another batch.
            self._drop("disconnect")
            self._gauge(0)
            raise
        self._gauge(0)
        return SendResult()

    def _broken(self, reason: str) -> SendResult:
        """Drop the connection; hand back every message not known to be acknowledged by TCP."""
        self._drop("error")
        self._gauge(0)
        done = bisect.bisect_right(self._ends, self._acked_bytes)
        self._m.sink_resent.labels(self.name).inc(len(self._ends) - done)
        if done == 0:
            raise TransientSinkError(reason)
        log.warning(
            "Connection broke; re-sending the unacknowledged part of the batch.",
            extra={"sink": self.name, "error": reason, "acknowledged": done, "retry": len(self._ends) - done},
        )
        return SendResult(retry=list(range(done, len(self._ends))))

    def _gauge(self, pending: int) -> None:
        """Set the unacknowledged gauges from ``pending`` bytes of the batch in flight."""
        self._g_bytes.set(pending)
        if pending == 0:
            self._g_events.set(0)
        elif self._ssl is None:
            self._g_events.set(len(self._ends) - bisect.bisect_right(self._ends, self._acked_bytes))
        else:
            self._g_events.set(len(self._ends))

    async def _acknowledged(self, writer: asyncio.StreamWriter) -> None:
        """Return once every byte is out of user space and acknowledged by the peer's TCP."""
        sock = writer.transport.get_extra_info("socket")
        delay = 0.0005
        zero_seen = False
        while True:
            if writer.transport.is_closing():
                raise ConnectionResetError("connection closed")
            state = tcp_state(sock)
            if state is not None and state != _ESTABLISHED:
                raise ConnectionResetError(f"connection is {_TCP_STATES.get(state, state)}")
            pending = writer.transport.get_write_buffer_size()
            if _TCP_INFO is not None:
                pending += unacked_bytes(sock)
            if self._ssl is None and self._ends and state is not None and tcp_state(sock) == _ESTABLISHED:
                # Plain TCP: stream bytes are message bytes, so the acknowledged prefix is exact. Only
                # trusted while still established afterwards: a reset empties the send queue, which
                # would read as "all acknowledged".
                self._acked_bytes = max(self._acked_bytes, self._ends[-1] - pending)
            self._gauge(pending)
            if pending == 0:
                # Twice, one loop iteration apart: a TLS transport may still hold bytes below it
                # that the loop writes as soon as the kernel makes room.
                if zero_seen:
                    return
                zero_seen = True
                await asyncio.sleep(0)
                continue
            zero_seen = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, _POLL_MAX_SECS)

    def _drop(self, event: str) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.transport.abort()
            self._m.sink_connections.labels(self.name, event).inc()

    async def aclose(self) -> None:
        writer, self._writer = self._writer, None
        if writer is None:
            return
        self._m.sink_connections.labels(self.name, "disconnect").inc()
        writer.close()
        try:
            async with asyncio.timeout(self._cfg.connect_timeout_secs):
                await writer.wait_closed()
        except (TimeoutError, OSError, ssl.SSLError):
            writer.transport.abort()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verification failed: {exc.verify_message}"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    return f"{type(exc).__name__}: {exc}"
