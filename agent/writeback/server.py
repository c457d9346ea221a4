"""The inbound write-back API (aiohttp application; ``listener`` serves it with its limits).

Routes (``{kind}`` is ``alerts`` or ``incidents``)::

    PATCH /v1/sources/{source}/{kind}/{id}   body: updatable properties + optional "comment"
    POST  /v1/sources/{source}/{kind}/{id}   the same, for tools that cannot send PATCH
    POST  /v1/sources/{source}/{kind}        the same with "id" in the body (Kibana's webhook
                                             connector cannot put the id into its fixed URL)
    GET   /v1/requests/{request_id}          state of a request: queued, done, failed (+ Graph's error)

Every request needs ``Authorization: Bearer <token>`` (compared in constant time against every
configured token: SHA-256 digests, ``hmac.compare_digest``, no early exit) → else 401. Then: 421
for a source another shard polls (naming it, also in ``X-Siem-Agent-Shard``); 404 for
an unknown source, request or path; 413 for a body over ``max_body_bytes``; 400 for a body that is not
a JSON object, has unknown fields, bad enum values or ids; 503 with ``Retry-After`` when the queue is
full. A write is answered ``202 Accepted`` only after the request is in the journal (fsync'd), with
``{"id": …, "state": "queued", "status": "/v1/requests/<id>"}`` and a ``Location`` header. An
``Idempotency-Key`` header (≤ 200 characters) makes a retried call return the request it created the
first time instead of queuing another. Nothing reaches Graph before the 202. Every answer closes its
connection.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from agent.errors import StateError
from agent.sources.graph.writes import Entity
from agent.writeback import audit
from agent.writeback.queue import QueueFull, RequestQueue
from agent.writeback.updates import UpdateError, check_target, parse_update

KINDS: dict[str, Entity] = {"alerts": "alert", "incidents": "incident"}
#: The token name the request authenticated as.
WHO = web.RequestKey("who", str)
RETRY_AFTER_FULL_SECS = 30
MAX_KEY_CHARS = 200

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """What the application needs besides the queue."""

    tokens: list[tuple[str, bytes]]  # (name, SHA-256 of the token)
    sources: frozenset[str]
    max_body_bytes: int
    request_timeout: float
    #: Configured sources another replica owns (``[shard] count`` > 1): source -> its shard index.
    elsewhere: Mapping[str, int] = field(default_factory=dict)


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    body = orjson.dumps({"error": {"code": code, "message": message}})
    return web.Response(status=status, body=body, content_type="application/json", headers=headers)


class WritebackApi:
    """Routes and middlewares; ``wake(source)`` tells that source's worker there is work."""

    def __init__(
        self,
        settings: ApiSettings,
        queue: RequestQueue,
        wake: Callable[[str], None],
        on_request: Callable[[web.BaseRequest], None] = lambda request: None,
        on_result: Callable[[str, int], None] = lambda source, status: None,
    ) -> None:
        self.settings = settings
        self.queue = queue
        self._wake = wake
        self._on_request = on_request
        self._on_result = on_result

    def app(self) -> web.Application:
        app = web.Application(
            middlewares=[self._guard, self._authenticate], client_max_size=self.settings.max_body_bytes
        )
        for kind, entity in KINDS.items():
            handler = self._submitter(entity)
            item = f"/v1/sources/{{source}}/{kind}/{{target}}"
            app.router.add_route("PATCH", item, handler)
            app.router.add_route("POST", item, handler)
            app.router.add_route("POST", f"/v1/sources/{{source}}/{kind}", handler)
        app.router.add_get("/v1/requests/{request_id}", self._status)
        return app

    # -- middlewares ---------------------------------------------------------------------------

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Start the request deadline; JSON for aiohttp's own errors; never keep the connection."""
        self._on_request(request)
        try:
            response = await handler(request)
        except web.HTTPRequestEntityTooLarge:
            response = error(413, "payloadTooLarge", f"body over {self.settings.max_body_bytes} bytes")
        except web.HTTPMethodNotAllowed as exc:
            response = error(405, "methodNotAllowed", f"{request.method} is not allowed here")
            response.headers["Allow"] = ", ".join(sorted(exc.allowed_methods))
        except web.HTTPNotFound:
            response = error(404, "notFound", "no such route")
        response.force_close()
        return response

    @web.middleware
    async def _authenticate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        header = request.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        who = self._who(presented.strip()) if scheme.lower() == "bearer" else None
        if who is None:
            reason = "no bearer token" if not header else "invalid bearer token"
            audit.rejected("-", _client(request), 401, reason, request.path)
            self._on_result("-", 401)
            return error(401, "unauthenticated", reason, {"WWW-Authenticate": 'Bearer realm="siem-agent"'})
        request[WHO] = who
        return await handler(request)

    def _who(self, presented: str) -> str | None:
        """The name of the token ``presented`` matches; every token is compared, in constant time."""
        digest = token_digest(presented)
        found: str | None = None
        for name, want in self.settings.tokens:
            if hmac.compare_digest(digest, want) and presented:
                found = name
        return found

    # -- handlers ------------------------------------------------------------------------------

    def _submitter(self, entity: Entity) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            return await self._submit(request, entity)

        return handler

    async def _submit(self, request: web.Request, entity: Entity) -> web.StreamResponse:
        who = request[WHO]
        source = request.match_info["source"]

        def refuse(
            status: int, code: str, message: str, headers: dict[str, str] | None = None
        ) -> web.Response:
            audit.rejected(who, _client(request), status, message, request.path)
            self._on_result(source if source in self.settings.sources else "-", status)
            return error(status, code, message, headers)

        if source in self.settings.elsewhere:
            shard = self.settings.elsewhere[source]
            return refuse(
                421,
                "misdirectedRequest",
                f"source {source!r} is polled by shard {shard}: send this request to that replica",
                {"X-Siem-Agent-Shard": str(shard)},
            )
        if source not in self.settings.sources:
            return refuse(404, "unknownSource", f"no source named {source[:64]!r} in this agent")
        limit = self.settings.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            return refuse(413, "payloadTooLarge", f"body over {limit} bytes")
        try:
            async with asyncio.timeout(self.settings.request_timeout):
                raw = await request.read()
        except TimeoutError:
            return refuse(408, "requestTimeout", "the body did not arrive in time")
        except web.HTTPRequestEntityTooLarge:
            return refuse(413, "payloadTooLarge", f"body over {limit} bytes")
        try:
            doc: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return refuse(400, "invalidJson", "the body is not JSON")
        in_path = request.match_info.get("target")
        try:
            if in_path is not None:
                target = check_target(in_path, entity)
                update = parse_update(entity, doc)
            else:
                target = check_target(doc.get("id") if isinstance(doc, dict) else None, entity)
                update = parse_update(entity, doc, extra=frozenset({"id"}))
        except UpdateError as exc:
            return refuse(400, "invalidRequest", str(exc))
        key = request.headers.get("Idempotency-Key")
        if key is not None and not 0 < len(key) <= MAX_KEY_CHARS:
            return refuse(400, "invalidRequest", f"Idempotency-Key must be 1-{MAX_KEY_CHARS} characters")
        if key is not None:
            earlier = self.queue.by_key(who, key)
            if earlier is not None:
                return _accepted(earlier.id, earlier.state, replayed=True)
        try:
            req = self.queue.submit(source, entity, target, update, who, key)
        except QueueFull:
            retry = {"Retry-After": str(RETRY_AFTER_FULL_SECS)}
            return refuse(503, "queueFull", "the write-back queue is full; retry later", retry)
        except StateError:
            return refuse(503, "stateUnavailable", "the write-back queue cannot be written")
        audit.queued(req, _client(request))
        self._on_result(source, 202)
        self._wake(source)
        return _accepted(req.id, req.state)

    async def _status(self, request: web.Request) -> web.StreamResponse:
        req = self.queue.get(request.match_info["request_id"])
        if req is None or req.by != request[WHO]:
            return error(404, "unknownRequest", "no such request (or it is past its retention)")
        return web.Response(body=orjson.dumps(req.to_json()), content_type="application/json")


def _accepted(request_id: str, state: str, replayed: bool = False) -> web.Response:
    status_url = f"/v1/requests/{request_id}"
    body = {"id": request_id, "state": state, "status": status_url}
    headers = {"Location": status_url}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return web.Response(status=202, body=orjson.dumps(body), content_type="application/json", headers=headers)


def _client(request: web.BaseRequest) -> str:
    peer = request.remote or "-"
    cert = request.transport.get_extra_info("peercert") if request.transport is not None else None
    if isinstance(cert, dict):
        for rdn in cert.get("subject", ()):
            for key, value in rdn:
                if key == "commonName":
                    return f"{peer} (CN={value})"
    return peer
