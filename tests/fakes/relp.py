"""A loopback RELP server we control, for what rsyslog's ``imrelp`` cannot be made to do on demand:
answer with a chosen non-200 code, hold answers back, or send ``serverclose``.

Its frame parsing is written independently of ``agent.sinks.relp.frame`` (a shared parser would
hide a shared bug). Everything else about RELP is tested against the real rsyslog/librelp.
"""

from __future__ import annotations

import asyncio
import ssl

from tests.fakes.transports import abort

OPEN_OK = b"200 OK\nrelp_version=0\nrelp_software=fake-relp,0,-\ncommands=syslog"


class _Conn(asyncio.Protocol):
    def __init__(self, owner: RelpReceiver) -> None:
        self.owner = owner
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.held: list[tuple[int, bytes]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.owner.conns.add(self)
        self.owner.sessions += 1

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            buf = self.buf
            i1 = buf.find(b" ")
            i2 = buf.find(b" ", i1 + 1) if i1 >= 0 else -1
            if i2 < 0:
                return
            j = i2 + 1
            while j < len(buf) and buf[j : j + 1].isdigit():
                j += 1
            if j >= len(buf):
                return
            n = int(buf[i2 + 1 : j])
            if n == 0:
                assert buf[j : j + 1] == b"\n", "missing trailer"
                payload, self.buf = b"", buf[j + 1 :]
            else:
                if len(buf) < j + 2 + n:
                    return
                assert buf[j + 1 + n : j + 2 + n] == b"\n", "missing trailer"
                payload, self.buf = buf[j + 1 : j + 1 + n], buf[j + 2 + n :]
            self.frame(int(buf[:i1]), buf[i1 + 1 : i2], payload)

    def frame(self, txnr: int, command: bytes, payload: bytes) -> None:
        assert self.transport is not None
        if command == b"open":
            self.owner.offers.append(payload)
            self.respond(txnr, OPEN_OK)
        elif command == b"syslog":
            self.owner.received.append(payload)
            self.owner.changed.set()
            hold_after = self.owner.hold_after
            if self.owner.holding or (hold_after is not None and len(self.owner.received) > hold_after):
                self.held.append((txnr, payload))
                return
            code = self.owner.answer(payload)
            if code.startswith(b"200"):
                self.owner.messages.append(payload)
            self.respond(txnr, code)
        elif command == b"close":
            self.respond(txnr, b"200 OK")
            self.transport.close()

    def respond(self, txnr: int, data: bytes) -> None:
        assert self.transport is not None
        if data:
            self.transport.write(b"%d rsp %d %s\n" % (txnr, len(data), data))
        else:
            self.transport.write(b"%d rsp 0\n" % txnr)

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner.conns.discard(self)
        self.owner.changed.set()


class RelpReceiver:
    """A RELP server on 127.0.0.1. ``messages``: payloads answered 200; ``received``: every payload."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self.ssl = ssl_context
        self.messages: list[bytes] = []
        self.received: list[bytes] = []
        self.offers: list[bytes] = []
        self.conns: set[_Conn] = set()
        self.sessions = 0
        self.holding = False
        #: Hold answers to every syslog command after the first ``hold_after`` received.
        self.hold_after: int | None = None
        self.changed = asyncio.Event()
        self.port = 0
        self._server: asyncio.Server | None = None

    def answer(self, payload: bytes) -> bytes:
        """The rsp DATA for one syslog payload (tests replace this)."""
        return b"200 OK"

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Conn(self), "127.0.0.1", self.port, ssl=self.ssl, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    def release(self, code: bytes = b"200 OK") -> None:
        """Answer every held transaction with ``code`` and stop holding."""
        self.holding = False
        self.hold_after = None
        for c in list(self.conns):
            for txnr, payload in c.held:
                if code.startswith(b"200"):
                    self.messages.append(payload)
                c.respond(txnr, code)
            c.held.clear()

    def server_close(self) -> None:
        """Send the ``serverclose`` hint on every session and close them (a server shutting down)."""
        for c in list(self.conns):
            assert c.transport is not None
            c.transport.write(b"0 serverclose 0\n")
            c.transport.close()

    async def crash(self) -> None:
        """Stop listening and reset every session."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for c in list(self.conns):
            assert c.transport is not None
            abort(c.transport)
        await self.wait(lambda: not self.conns)

    async def stop(self) -> None:
        await self.crash()

    async def wait(self, cond: object, timeout: float = 10.0) -> None:
        """Wait (bounded) until ``cond()`` holds; re-checked whenever a connection event happens."""
        assert callable(cond)
        async with asyncio.timeout(timeout):
            while not cond():
                self.changed.clear()
                await self.changed.wait()
