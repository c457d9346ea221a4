"""A fake Splunk HTTP Event Collector (aiohttp on 127.0.0.1, port 0).

Our own reading of Splunk's documentation — "Format events for HTTP Event Collector", "HTTP Event
Collector REST API endpoints", "About HEC Indexer Acknowledgment" and the reply-code table (1-20)
summarised in formats.md A4 — not Splunk itself (nothing runnable exists in our registries).

Validates: ``Authorization: Splunk <token>`` (2 missing / 4 invalid), ``X-Splunk-Request-Channel``
(10 missing / 11 not a GUID) when ack is on, gzip bodies, concatenated JSON envelopes (5 no data,
6 invalid format with ``invalid-event-number``, 12/13 event missing/blank, 15 nested fields, 7 unknown
index). Indexer ack: every accepted POST gets an ``ackId`` per channel; ``/services/collector/ack``
reports it ``true`` after ``ack_after_polls`` polls (``None``: never). ``faults`` queues whole
replies (503 code 9, 429 + Retry-After, 500 code 8, 413, a malformed 200) for the next POSTs.
``GET /services/collector/health`` (no token needed) answers ``health``: 200 code 17 "HEC is healthy",
or e.g. ``UNHEALTHY`` (503 code 18, queues full) / ``ACK_UNAVAILABLE`` (503 code 19).
"""

from __future__ import annotations

import gzip
import json
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

TOKEN = "hec-token-5e8d1c0f-do-not-log"


@dataclass
class Fault:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def reply(status: int, code: int, text: str, **extra: Any) -> Fault:
    return Fault(status, json.dumps({"text": text, "code": code, **extra}).encode())


BUSY = reply(503, 9, "Server is busy")
INTERNAL = reply(500, 8, "Internal server error")
THROTTLED = Fault(429, b'{"text":"Too many requests","code":9}', {"Retry-After": "0"})
TOO_LARGE = Fault(413, b'{"text":"Content too large","code":27}')
MALFORMED = Fault(200, b'{"text":"Succ')
HEALTHY = reply(200, 17, "HEC is healthy")
UNHEALTHY = reply(503, 18, "HEC is unhealthy, queues are full")
ACK_UNAVAILABLE = reply(503, 19, "HEC is unhealthy, ack service unavailable")


class FakeHec:
    """State and handlers of the fake collector."""

    def __init__(self, token: str = TOKEN, indexes: tuple[str, ...] = ("main", "security")) -> None:
        self.token = token
        self.indexes = set(indexes)
        self.ack_enabled = True
        self.ack_after_polls: int | None = 0
        self.faults: deque[Fault] = deque()
        self.health = HEALTHY
        #: Called with each envelope; a non-None result rejects it with that code (6, 12, 13, 15).
        self.reject: Callable[[dict[str, Any]], int | None] | None = None
        self.received: list[dict[str, Any]] = []  # every accepted envelope, in order
        self.indexed: list[dict[str, Any]] = []  # envelopes whose ackId was reported true
        self.requests: list[dict[str, str]] = []  # headers of every request
        self._pending: dict[tuple[str, int], tuple[list[dict[str, Any]], int]] = {}
        self._next_ack: dict[str, int] = {}
        self._runner: web.AppRunner | None = None
        self.url = ""

    def _auth(self, request: web.Request) -> Fault | None:
        header = request.headers.get("Authorization")
        if not header:
            return reply(401, 2, "Token is required")
        if header != f"Splunk {self.token}":
            return reply(403, 4, "Invalid token")
        return None

    def _channel(self, request: web.Request) -> tuple[str | None, Fault | None]:
        channel = request.headers.get("X-Splunk-Request-Channel") or request.query.get("channel")
        if not self.ack_enabled:
            return channel, None
        if not channel:
            return None, reply(400, 10, "Data channel is missing")
        try:
            uuid.UUID(channel)
        except ValueError:
            return None, reply(400, 11, "Invalid data channel")
        return channel, None

    @staticmethod
    def _respond(fault: Fault) -> web.Response:
        return web.Response(
            status=fault.status, body=fault.body, headers=fault.headers, content_type="application/json"
        )

    async def _body(self, request: web.Request) -> bytes | None:
        # aiohttp's server already inflates gzip request bodies; inflate here only if it did not.
        raw = await request.read()
        if request.headers.get("Content-Encoding") == "gzip" and raw[:2] == b"\x1f\x8b":
            try:
                return gzip.decompress(raw)
            except (OSError, EOFError):
                return None
        return raw

    async def event(self, request: web.Request) -> web.Response:
        self.requests.append(dict(request.headers))
        if self.faults:
            return self._respond(self.faults.popleft())
        bad = self._auth(request)
        channel, bad_channel = self._channel(request)
        if bad or bad_channel:
            return self._respond(bad or bad_channel)  # type: ignore[arg-type]
        body = await self._body(request)
        if body is None:
            return self._respond(reply(400, 6, "Invalid data format"))
        text = body.decode("utf-8", "replace").strip()
        if not text:
            return self._respond(reply(400, 5, "No data"))
        accepted: list[dict[str, Any]] = []
        decoder = json.JSONDecoder()
        pos, n = 0, 0
        while pos < len(text):
            while pos < len(text) and text[pos].isspace():
                pos += 1
            if pos >= len(text):
                break
            try:
                env, pos = decoder.raw_decode(text, pos)
            except json.JSONDecodeError:
                return self._reject(6, "Invalid data format", n, accepted, channel)
            code = self._check(env)
            if code is None and self.reject is not None:
                code = self.reject(env)
            if code is not None:
                texts = {
                    6: "Invalid data format",
                    7: "Incorrect index",
                    12: "Event field is required",
                    13: "Event field cannot be blank",
                    15: "Error in handling indexed fields",
                }
                return self._reject(code, texts.get(code, "error"), n, accepted, channel)
            accepted.append(env)
            n += 1
        return self._accept(accepted, channel)

    def _check(self, env: Any) -> int | None:
        if not isinstance(env, dict):
            return 6
        if "event" not in env:
            return 12
        if env["event"] in ("", None, {}):
            return 13
        if "index" in env and env["index"] not in self.indexes:
            return 7
        fields = env.get("fields", {})
        if not isinstance(fields, dict) or any(
            not isinstance(v, str) and not (isinstance(v, list) and all(isinstance(x, str) for x in v))
            for v in fields.values()
        ):
            return 15
        return None

    def _reject(
        self, code: int, text: str, n: int, accepted: list[dict[str, Any]], channel: str | None
    ) -> web.Response:
        # Events before the bad one are ingested (Splunk's documented behaviour).
        self.received.extend(accepted)
        self.indexed.extend(accepted)
        status = 400
        return self._respond(reply(status, code, text, **{"invalid-event-number": n}))

    def _accept(self, accepted: list[dict[str, Any]], channel: str | None) -> web.Response:
        self.received.extend(accepted)
        if not self.ack_enabled or channel is None:
            self.indexed.extend(accepted)
            return self._respond(reply(200, 0, "Success"))
        ack_id = self._next_ack.get(channel, 0)
        self._next_ack[channel] = ack_id + 1
        self._pending[(channel, ack_id)] = (accepted, 0)
        return self._respond(reply(200, 0, "Success", ackId=ack_id))

    async def ack(self, request: web.Request) -> web.Response:
        self.requests.append(dict(request.headers))
        bad = self._auth(request)
        if bad:
            return self._respond(bad)
        if not self.ack_enabled:
            return self._respond(reply(400, 14, "ACK is disabled"))
        channel, bad_channel = self._channel(request)
        if bad_channel or channel is None:
            return self._respond(bad_channel or reply(400, 10, "Data channel is missing"))
        try:
            ids = json.loads(await request.read())["acks"]
        except (ValueError, KeyError, TypeError):
            return self._respond(reply(400, 6, "Invalid data format"))
        out: dict[str, bool] = {}
        for ack_id in ids:
            key = (channel, ack_id)
            if key not in self._pending:
                out[str(ack_id)] = False
                continue
            events, polls = self._pending[key]
            done = self.ack_after_polls is not None and polls >= self.ack_after_polls
            if done:
                self.indexed.extend(events)
                del self._pending[key]  # statuses are dropped once returned true
            else:
                self._pending[key] = (events, polls + 1)
            out[str(ack_id)] = done
        return web.json_response({"acks": out})

    async def health_check(self, request: web.Request) -> web.Response:
        self.requests.append(dict(request.headers))
        return self._respond(self.health)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/services/collector/event", self.event)
        app.router.add_post("/services/collector", self.event)
        app.router.add_post("/services/collector/ack", self.ack)
        app.router.add_get("/services/collector/health", self.health_check)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def indexed_ids(self) -> list[str]:
        return [e["event"]["id"] if isinstance(e["event"], dict) else e["event"] for e in self.indexed]


@pytest.fixture
async def fake_hec() -> AsyncIterator[FakeHec]:
    hec = FakeHec()
    await hec.start()
    try:
        yield hec
    finally:
        await hec.stop()
