"""A loopback HTTP proxy that records where it was asked to go (asyncio streams, 127.0.0.1, port 0).

``CONNECT host:port`` follows RFC 9110 §9.3.6: the proxy opens a TCP connection to the target,
answers ``200`` and then relays bytes both ways until either side closes (TLS passes through
untouched); each target is recorded in ``targets``. A request in absolute-form (RFC 9112 §3.2.2,
``POST http://host:port/path HTTP/1.1``, how clients send plain ``http://`` requests through a
proxy) is forwarded in origin-form with ``Connection: close`` (one request per proxy connection),
and its ``METHOD URL`` recorded in ``requests``. ``Proxy-Authorization`` values are recorded in
``authorizations`` and never forwarded; none is required. Only loopback targets are used by tests.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from yarl import URL

_HOP_BY_HOP = {b"connection", b"keep-alive", b"proxy-authorization", b"proxy-connection"}


class ConnectProxy:
    """A minimal HTTP proxy on 127.0.0.1 recording CONNECT targets and forwarded plain requests."""

    def __init__(self) -> None:
        self.targets: list[str] = []  # CONNECT targets, ``host:port``
        self.requests: list[str] = []  # forwarded absolute-form requests, ``METHOD URL``
        self.authorizations: list[str] = []  # Proxy-Authorization values received
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def seen(self) -> int:
        """Everything that went through the proxy so far."""
        return len(self.targets) + len(self.requests)

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.url

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            request_line, *header_lines = head[:-4].split(b"\r\n")
            method, target, version = request_line.decode().split(" ", 2)
            headers: list[bytes] = []
            for line in header_lines:
                name = line.split(b":", 1)[0].strip().lower()
                if name == b"proxy-authorization":
                    self.authorizations.append(line.split(b":", 1)[1].strip().decode())
                if name not in _HOP_BY_HOP:
                    headers.append(line)
            if method == "CONNECT":
                self.targets.append(target)
                host, port = target.rsplit(":", 1)
                up_reader, up_writer = await asyncio.open_connection(host, int(port))
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            elif target.startswith("http://"):
                url = URL(target)
                assert url.host is not None and url.port is not None
                self.requests.append(f"{method} {target}")
                up_reader, up_writer = await asyncio.open_connection(url.host, url.port)
                origin = url.raw_path_qs.encode()
                up_writer.write(
                    b"\r\n".join(
                        [
                            f"{method} ".encode() + origin + f" {version}".encode(),
                            *headers,
                            b"Connection: close",
                            b"",
                            b"",
                        ]
                    )
                )
            else:
                writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nConnection: close\r\n\r\n")
                return

            async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
                with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                    while data := await src.read(65536):
                        dst.write(data)
                        await dst.drain()
                with contextlib.suppress(Exception):
                    dst.close()

            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2)


@pytest.fixture
async def proxy() -> AsyncIterator[ConnectProxy]:
    """A running ``ConnectProxy``, stopped at teardown."""
    p = ConnectProxy()
    await p.start()
    try:
        yield p
    finally:
        await p.stop()


PROXY_ENV = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
NO_PROXY_ENV = ("NO_PROXY", "no_proxy")


def clear_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove every proxy variable (and NO_PROXY), so a CI environment's proxy cannot interfere."""
    for name in PROXY_ENV + NO_PROXY_ENV:
        monkeypatch.delenv(name, raising=False)
