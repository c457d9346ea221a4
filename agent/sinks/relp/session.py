"""One RELP client session: ``open`` handshake, a window of outstanding transactions, ``close``.

Follows librelp's ``doc/relp.html`` (see ``frame.py``). The client numbers its transactions from 1
(``open``), sends commands without waiting while fewer than ``window`` are unanswered, and matches
each ``rsp`` to its transaction number. ``serverclose`` (the server is shutting down), EOF, a reset
or a malformed frame end the session: every unanswered transaction resolves to ``None`` ("no
answer"), and the caller decides what to re-send. Nothing here retries or reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

from agent.errors import TransientSinkError
from agent.sinks.relp.frame import MAX_TXNR, FrameParser, Response, encode, parse_offers, parse_response

#: An ``rsp`` (even to ``open``) is never larger than this.
_MAX_RSP_BYTES = 64 * 1024
_READ_CHUNK = 64 * 1024

Answer = asyncio.Future[Response | None]


class SessionBroken(Exception):
    """The session ended; ``str()`` says why. Internal to the RELP sink."""


class RelpSession:
    """An open RELP session over one stream. Single producer: one ``submit`` at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, window: int) -> None:
        self._reader = reader
        self._writer = writer
        self._window = window
        self._next_txnr = 1
        self._pending: dict[int, tuple[Answer, int]] = {}
        self._room = asyncio.Event()
        self._room.set()
        self._closing = False
        self.broken: str | None = None
        self.unacked_bytes = 0
        self._task = asyncio.get_running_loop().create_task(self._read_loop(), name="relp:read")

    @property
    def unacked(self) -> int:
        """Commands sent and not answered yet."""
        return len(self._pending)

    async def open(self, offers: bytes) -> dict[str, str]:
        """Send ``open`` with ``offers``; return the server's offers. Raises ``TransientSinkError``."""
        answer = await self.submit("open", offers)
        rsp = await answer
        if rsp is None:
            raise TransientSinkError(f"RELP open failed: {self.broken}")
        if not rsp.ok:
            raise TransientSinkError(f"RELP server refused the session: {rsp.code} {rsp.text}")
        return parse_offers(rsp.body)

    async def submit(self, command: str, data: bytes) -> Answer:
        """Write one command once the window has room; return the future of its ``rsp``.

        Raises ``SessionBroken`` if the session ended before the command could be written.
        """
        while len(self._pending) >= self._window and self.broken is None:
            self._room.clear()
            await self._room.wait()
        if self.broken is not None:
            raise SessionBroken(self.broken)
        txnr = self._next_txnr
        self._next_txnr = 1 if txnr == MAX_TXNR else txnr + 1
        frame = encode(txnr, command, data)
        answer: Answer = asyncio.get_running_loop().create_future()
        self._pending[txnr] = (answer, len(frame))
        self.unacked_bytes += len(frame)
        self._writer.write(frame)
        try:
            await self._writer.drain()
        except (OSError, ssl.SSLError) as exc:
            self._fail(f"write failed: {type(exc).__name__}: {exc}")
        return answer

    async def _read_loop(self) -> None:
        parser = FrameParser(_MAX_RSP_BYTES)
        try:
            while True:
                chunk = await self._reader.read(_READ_CHUNK)
                if not chunk:
                    self._fail("the server closed the connection")
                    return
                for frame in parser.feed(chunk):
                    if frame.command == "serverclose":
                        self._fail("the server closed the session (serverclose)")
                        return
                    if frame.command != "rsp":
                        self._fail(f"unexpected command {frame.command!r} from the server")
                        return
                    rsp = parse_response(frame.data)  # before pop: a bad rsp fails it with the rest
                    entry = self._pending.pop(frame.txnr, None)
                    if entry is None:
                        self._fail(f"rsp for unknown transaction {frame.txnr}")
                        return
                    answer, size = entry
                    self.unacked_bytes -= size
                    self._room.set()
                    if not answer.done():
                        answer.set_result(rsp)
        except TransientSinkError as exc:  # malformed frame
            self._fail(str(exc))
        except (OSError, ssl.SSLError) as exc:
            self._fail(f"{type(exc).__name__}: {exc}")

    def _fail(self, reason: str) -> None:
        """End the session: unanswered transactions resolve to ``None``; the connection is aborted."""
        if self.broken is None:
            self.broken = "session closed" if self._closing else reason
        for answer, _ in self._pending.values():
            if not answer.done():
                answer.set_result(None)
        self._pending.clear()
        self.unacked_bytes = 0
        self._room.set()
        self._writer.transport.abort()

    async def close(self, timeout: float) -> None:
        """Send ``close``, wait (bounded) for its ``rsp``, then close the connection."""
        if self.broken is None:
            with contextlib.suppress(SessionBroken, TimeoutError):
                async with asyncio.timeout(timeout):
                    answer = await self.submit("close", b"")
                    self._closing = True
                    await answer
        self._closing = True
        self.abort()
        # wait() never raises the task's cancellation into us; both waits are bounded.
        await asyncio.wait([self._task], timeout=timeout)
        with contextlib.suppress(TimeoutError, OSError, ssl.SSLError):
            async with asyncio.timeout(timeout):
                await self._writer.wait_closed()

    def abort(self) -> None:
        """Drop the session now (no ``close``)."""
        self._closing = True
        self._fail("session closed")
        self._task.cancel()
