"""Syslog over TCP (RFC 6587 octet counting or LF framing) and over TLS (RFC 5425).

Delivery, and its limit. A successful ``write``/``drain`` only means the bytes reached the local
kernel; a receiver that resets the connection loses everything still queued. So ``send`` returns
only when the kernel reports the socket's send queue empty — ``SIOCOUTQ`` (``TIOCOUTQ``) counts the
bytes the peer's TCP has not acknowledged yet — and the connection is still ``ESTABLISHED``
(``TCP_INFO``).

A stalled receiver is backpressure, not failure. While the receiver does not read (alive, its window
closed), its TCP still answers our zero-window probes: ``send`` keeps waiting on the same connection,
however long (a warning is logged once the wait passes ``timeout_secs``; shutdown's deadline still
applies). Only a real error ends the wait: the connection reset, closed or no longer established, or
the peer's TCP silent — retransmissions or window probes unanswered (``TCP_INFO``) for
``timeout_secs``. Reconnecting on a mere stall would make the receiver read the batch twice: once from
the old connection when it resumes, once from the new one.

The batch being sent is the replay window (bounded by the runner's ``batch.max_bytes``): while
waiting, the sink tracks how many of its bytes the peer's TCP has acknowledged. After a real error the
connection is dropped with a reset (``SO_LINGER`` 0: the kernel does not go on delivering it) and what
is not known to be acknowledged goes back to the runner, which re-sends it on a new connection: on
plain TCP every message after the last fully acknowledged one (``SendResult.retry``); over TLS, whose
record bytes do not map to messages, or when nothing was acknowledged, the whole batch
(``TransientSinkError``). The receiver may thus see part of a batch twice (at-least-once), never lose
a byte its TCP did not acknowledge. Batches are not pipelined: docs/sinks.md has the measurement
behind that choice.

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
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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
    info = tcp_info(sock)
    return None if info is None else info.state


@dataclass(frozen=True, slots=True)
class TcpInfo:
    """What Linux ``TCP_INFO`` says about a connection, as far as liveness goes."""

    state: int
    #: Retransmission timeouts since the peer last acknowledged new data (``tcpi_retransmits``).
    retransmits: int
    #: Zero-window probes the peer has not answered (``tcpi_probes``; any answer resets it).
    probes: int


def tcp_info(sock: Any) -> TcpInfo | None:
    """``TCP_INFO`` of ``sock``, or ``None`` where unsupported (non-Linux)."""
    if _TCP_INFO is None:
        return None
    raw = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 8)
    state, _ca, retransmits, probes = struct.unpack_from("4B", raw)
    return TcpInfo(state, retransmits, probes)


class PeerLiveness:
    """Judges from successive ``TcpInfo`` samples whether the peer's TCP still answers.

    A peer that stopped reading still acknowledges our window probes (``probes`` falls back to 0 with
    every answer): alive, however long it stalls. A dead peer (host gone, cable cut) answers nothing:
    retransmissions or probes stay unanswered; once they have for ``timeout_secs`` it is dead. The
    kernel's own limits (``tcp_retries2``: ~15 minutes) are far longer, and ``TCP_USER_TIMEOUT`` is
    not used because since Linux 5.11 it also ends a connection whose peer merely keeps its window
    closed (the stall this sink waits out).
    """

    def __init__(self, timeout_secs: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._timeout = timeout_secs
        self._now = monotonic
        self._since: float | None = None

    def reset(self) -> None:
        """A new wait (or connection) begins."""
        self._since = None

    def dead(self, info: TcpInfo) -> str | None:
        """The reason the peer counts as dead now, or ``None`` while it answers."""
        if info.retransmits == 0 and info.probes == 0:
            self._since = None
            return None
        now = self._now()
        if self._since is None:
            self._since = now
        silent = now - self._since
        if silent < self._timeout:
            return None
        return (
            f"the peer's TCP has not answered for {silent:.0f}s "
            f"({info.retransmits} retransmissions, {info.probes} window probes unanswered)"
        )


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
    with contextlib.suppress(OSError, AttributeError):
        # Keepalive finds a peer that died while the connection was idle before the next batch is
        # written into it: probes after 60 s idle, every 10 s, 3 unanswered ones close it.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 60)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
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
        self._liveness = PeerLiveness(config.timeout_secs)

    async def start(self) -> None:
        if self._writer is None:  # starting a connected sink must not leak its connection
            await self._connect()

    async def healthcheck(self) -> str:
        """Connect (and complete the TLS handshake) unless a usable connection is open; keep it."""
        if self._writer is not None and not self._usable(self._writer):
            self._drop("disconnect")
        await self.start()
        return f"reachable: connected to {self._peer}" + (" (TLS)" if self._ssl is not None else "")

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
            writer.write(data)
            self._gauge(len(data))
            await self._acknowledged(writer)
        except PeerDead as exc:
            # Our reset makes the receiver's kernel discard what its process had not read yet:
            # nothing of the batch can count as delivered.
            self._acked_bytes = 0
            return self._broken(f"{self._peer}: {exc}")
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
        """Return once every byte is out of user space and acknowledged by the peer's TCP.

        Waits as long as the peer's TCP answers (a stall is backpressure); raises ``OSError`` when the
        connection breaks and ``PeerDead`` when the peer stops answering for ``timeout_secs``.
        """
        sock = writer.transport.get_extra_info("socket")
        delay = 0.0005
        zero_seen = False
        self._liveness.reset()
        started = time.monotonic()
        warned = False
        while True:
            if writer.transport.is_closing():
                raise ConnectionResetError("connection closed")
            info = tcp_info(sock)
            state = info.state if info is not None else None
            if state is not None and state != _ESTABLISHED:
                raise ConnectionResetError(f"connection is {_TCP_STATES.get(state, state)}")
            if info is not None and (reason := self._liveness.dead(info)) is not None:
                raise PeerDead(reason)
            if not warned and time.monotonic() - started > self._cfg.timeout_secs:
                warned = True
                log.warning(
                    "Receiver is not reading; waiting on the same connection (backpressure).",
                    extra={"sink": self.name, "peer": self._peer, "waited_secs": self._cfg.timeout_secs},
                )
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
        """Abandon the connection with a reset, so the kernel does not go on delivering its queue."""
        writer, self._writer = self._writer, None
        if writer is not None:
            sock = writer.transport.get_extra_info("socket")
            with contextlib.suppress(OSError, AttributeError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            if not writer.transport.is_closing():
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


class PeerDead(Exception):
    """The peer's TCP stopped answering (see ``PeerLiveness``)."""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verification failed: {exc.verify_message}"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    return f"{type(exc).__name__}: {exc}"
