"""A generic NDJSON HTTP receiver (aiohttp, 127.0.0.1): records each request; ``statuses`` scripts replies.

``hold`` (when cleared) keeps every request waiting, for cancellation tests.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web


class NdjsonReceiver:
    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self.headers: list[dict[str, str]] = []
        self.statuses: deque[int] = deque()
        self.hold = asyncio.Event()
        self.hold.set()
        self.waiting = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.headers.append(dict(request.headers))
        body = await request.read()  # aiohttp inflates gzip bodies
        self.waiting.set()
        await self.hold.wait()
        status = self.statuses.popleft() if self.statuses else 200
        if status == 200:
            if not body.endswith(b"\n"):
                return web.Response(status=400, text="body must end with a newline")
            self.lines.extend(body.splitlines())
        headers = {"Retry-After": "3"} if status == 429 else {}
        return web.Response(status=status, text="ok" if status == 200 else "no", headers=headers)

    async def start(self) -> str:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/ingest", self.handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/ingest"
        return self.url

    async def stop(self) -> None:
        self.hold.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def table(self, **over: Any) -> dict[str, Any]:
        return {"type": "http", "url": self.url, "codec": {"type": "json"}, **over}


@pytest.fixture
async def ndjson_receiver() -> AsyncIterator[NdjsonReceiver]:
    rcv = NdjsonReceiver()
    await rcv.start()
    try:
        yield rcv
    finally:
        await rcv.stop()
