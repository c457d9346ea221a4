"""Loopback syslog receivers we control: TCP (RFC 6587 octet counting or LF, optional TLS) and UDP.

``TcpReceiver`` can pause reading (its TCP window fills, so the sender's bytes stay unacknowledged),
crash (connections reset) and restart on the same port. On ``crash`` it first consumes what its TCP
already acknowledged: it models a receiver that keeps everything it acknowledged, so a test of the
*sender* sees exactly the sender's guarantee (receiver-side buffer loss is the documented TCP bound).
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
from collections.abc import AsyncIterator

import pytest

from tests.fakes.transports import abort


class _Parser:
    """Incremental RFC 6587 parser: octet counting when a frame starts with a digit, else LF."""

    def __init__(self, sink: list[bytes]) -> None:
        self.buf = b""
        self.sink = sink

    def feed(self, data: bytes) -> None:
        self.buf += data
        while self.buf:
            if self.buf[:1].isdigit():
                sp = self.buf.find(b" ")
                if sp < 0:
                    return
                n = int(self.buf[:sp])
                if len(self.buf) < sp + 1 + n:
                    return
                self.sink.append(self.buf[sp + 1 : sp + 1 + n])
                self.buf = self.buf[sp + 1 + n :]
            else:
                lf = self.buf.find(b"\n")
                if lf < 0:
                    return
                self.sink.append(self.buf[:lf])
                self.buf = self.buf[lf + 1 :]


class _Conn(asyncio.Protocol):
    def __init__(self, owner: TcpReceiver) -> None:
        self.owner = owner
        self.parser = _Parser(owner.messages)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.owner.conns.add(self)
        self.owner.accepted += 1
        if self.owner.paused:
            # Not now: Python 3.11.2 (Debian 12's) adds the transport's reader *after* this callback
            # and ignores a pause made here; a callback queued now runs after that.
            asyncio.get_running_loop().call_soon(self._pause_if_still_paused)
        self.owner.changed.set()

    def _pause_if_still_paused(self) -> None:
        if self.owner.paused and self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def data_received(self, data: bytes) -> None:
        self.parser.feed(data)
        self.owner.changed.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner.conns.discard(self)
        self.owner.changed.set()


class TcpReceiver:
    """A syslog TCP (or TLS) receiver on 127.0.0.1; ``messages`` holds every complete frame."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None, rcvbuf: int | None = None) -> None:
        self.ssl = ssl_context
        self.rcvbuf = rcvbuf
        self.messages: list[bytes] = []
        self.conns: set[_Conn] = set()
        self.accepted = 0
        self.paused = False
        self.changed = asyncio.Event()
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        sock.listen(16)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Conn(self), sock=sock, ssl=self.ssl)
        return self.port

    def pause(self) -> None:
        self.paused = True
        for c in self.conns:
            if c.transport is not None:
                c.transport.pause_reading()

    def resume(self) -> None:
        self.paused = False
        for c in self.conns:
            if c.transport is not None:
                c.transport.resume_reading()

    async def crash(self) -> None:
        """Stop listening and reset every connection, keeping what its TCP acknowledged (plain TCP)."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for c in list(self.conns):
            assert c.transport is not None
            raw = c.transport.get_extra_info("socket")
            if raw is not None and self.ssl is None:
                dup = socket.socket(fileno=os.dup(raw.fileno()))
                dup.setblocking(False)
                with dup:
                    while True:
                        try:
                            data = dup.recv(1 << 20)
                        except (BlockingIOError, OSError):
                            break
                        if not data:
                            break
                        c.parser.feed(data)
            # A half-received frame dies with the connection.
            c.parser.buf = b""
            abort(c.transport)
        await self._wait(lambda: not self.conns)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for c in list(self.conns):
            if c.transport is not None:
                abort(c.transport)
        await self._wait(lambda: not self.conns)

    async def _wait(self, cond: object, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not cond():  # type: ignore[operator]
                self.changed.clear()
                await self.changed.wait()

    async def wait_messages(self, n: int, timeout: float = 10.0) -> None:
        await self._wait(lambda: len(self.messages) >= n, timeout)


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, owner: UdpReceiver) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.owner.datagrams.append(data)
        self.owner.changed.set()


class UdpReceiver:
    """Collects datagrams on 127.0.0.1."""

    def __init__(self) -> None:
        self.datagrams: list[bytes] = []
        self.changed = asyncio.Event()
        self.port = 0
        self._transport: asyncio.DatagramTransport | None = None

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _Udp(self), local_addr=("127.0.0.1", 0))
        self._transport = transport
        self.port = transport.get_extra_info("sockname")[1]
        return self.port

    async def wait_datagrams(self, n: int, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.datagrams) < n:
                self.changed.clear()
                await self.changed.wait()

    def stop(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None


@pytest.fixture
async def tcp_receiver() -> AsyncIterator[TcpReceiver]:
    rcv = TcpReceiver()
    await rcv.start()
    try:
        yield rcv
    finally:
        await rcv.stop()


@pytest.fixture
async def udp_receiver() -> AsyncIterator[UdpReceiver]:
    rcv = UdpReceiver()
    await rcv.start()
    try:
        yield rcv
    finally:
        rcv.stop()
        await asyncio.sleep(0)  # the transport closes its socket on the next loop iteration
