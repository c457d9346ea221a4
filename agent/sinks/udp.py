"""Syslog over UDP (RFC 5426): one message per datagram, no framing, no acknowledgement.

Delivery: none is knowable. ``send`` returns once every datagram was handed to the kernel; a lost
datagram is lost silently. Send errors the kernel does report (``ECONNREFUSED`` from an ICMP
port-unreachable on the connected socket, no route) raise ``TransientSinkError`` and the batch is
re-sent. A message longer than ``max_datagram_bytes`` is never split: it is truncated (at a UTF-8
character boundary; counted in ``siem_agent_truncated_fields_total{field="datagram"}``) or dropped
(reported in ``SendResult.dropped``; the runner counts it once in
``siem_agent_dropped_total{component="sink:<name>",reason="oversize"}``), per ``oversize``.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence

from agent.errors import TransientSinkError
from agent.model import Event
from agent.sinks.base import SendResult, SinkContext
from agent.sinks.config import UdpSinkConfig


def truncate_utf8(data: bytes, limit: int) -> bytes:
    """``data`` cut to at most ``limit`` bytes without splitting a UTF-8 sequence."""
    if len(data) <= limit:
        return data
    cut = limit
    # Step back over continuation bytes (10xxxxxx) so the cut lands on a character start.
    while cut > 0 and (data[cut] & 0xC0) == 0x80:
        cut -= 1
    return data[:cut]


class UdpSink:
    """Sends each payload as one datagram on a connected UDP socket."""

    def __init__(self, config: UdpSinkConfig, ctx: SinkContext) -> None:
        self.name = config.name
        self._cfg = config
        self._m = ctx.metrics
        self._sock: socket.socket | None = None
        self._peer = f"{config.host}:{config.port}"

    async def start(self) -> None:
        if self._sock is None:  # starting an open sink must not leak its socket
            await self._open()

    async def healthcheck(self) -> str:
        """Resolve the receiver and connect the socket. All UDP can check: a datagram is never answered."""
        await self.start()
        return f"resolved {self._peer} (UDP: nothing answers)"

    async def _open(self) -> socket.socket:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._cfg.connect_timeout_secs):
                infos = await loop.getaddrinfo(self._cfg.host, self._cfg.port, type=socket.SOCK_DGRAM)
            family, type_, proto, _, addr = infos[0]
            sock = socket.socket(family, type_, proto)
        except (OSError, TimeoutError, IndexError) as exc:
            self._m.sink_connections.labels(self.name, "error").inc()
            raise TransientSinkError(f"cannot resolve {self._peer}: {type(exc).__name__}") from None
        try:
            sock.setblocking(False)
            sock.connect(addr)
        except OSError as exc:
            sock.close()
            self._m.sink_connections.labels(self.name, "error").inc()
            raise TransientSinkError(f"cannot open UDP socket to {self._peer}: {exc.strerror}") from None
        self._m.sink_connections.labels(self.name, "connect").inc()
        self._sock = sock
        return sock

    def _datagrams(self, events: Sequence[Event]) -> tuple[list[bytes], dict[int, str]]:
        """The datagrams to send, and the events dropped by ``oversize = "drop"`` (the runner counts them)."""
        limit = self._cfg.max_datagram_bytes
        out = []
        dropped: dict[int, str] = {}
        for i, e in enumerate(events):
            if len(e.payload) <= limit:
                out.append(e.payload)
            elif self._cfg.oversize == "truncate":
                out.append(truncate_utf8(e.payload, limit))
                self._m.truncated.labels(self.name, "datagram").inc()
            else:
                dropped[i] = "oversize"
        return out, dropped

    async def send(self, events: Sequence[Event]) -> SendResult:
        sock = self._sock or await self._open()
        loop = asyncio.get_running_loop()
        datagrams, dropped = self._datagrams(events)
        try:
            async with asyncio.timeout(self._cfg.connect_timeout_secs):
                for datagram in datagrams:
                    await loop.sock_sendall(sock, datagram)
        except TimeoutError:
            raise TransientSinkError(f"sending to {self._peer} timed out") from None
        except OSError as exc:
            # Reopen: some errors (e.g. a changed route) stick to the socket.
            self._close()
            self._m.sink_connections.labels(self.name, "error").inc()
            raise TransientSinkError(f"send to {self._peer} failed: {exc.strerror}") from None
        return SendResult(dropped=dropped)

    def _close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    async def aclose(self) -> None:
        self._close()
