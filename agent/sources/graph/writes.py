"""Graph's write calls on alerts and incidents: update (PATCH), add a comment (POST), read one (GET).

Microsoft Graph docs: ``security-alert-update.md`` (``PATCH /security/alerts_v2/{id}`` → 200 and the
updated alert), ``security-alert-post-comments.md`` (``POST …/comments`` with
``{"@odata.type": "microsoft.graph.security.alertComment", "comment": …}`` → 200 and *every* comment
of the alert), ``security-incident-update.md`` and the incident comments call, the same shapes on
``/security/incidents/{id}``. They need ``SecurityAlert.ReadWrite.All`` /
``SecurityIncident.ReadWrite.All``.

Each call is one request through ``GraphClient.send`` (the tenant's credential, proxy, CA bundle and
rate budget, on the writes' share). What an answer means for the caller:

* 2xx — done; the parsed body is returned;
* 401 — one fresh token, then once more; a second 401 is a ``GraphWriteError``;
* 429 — ``WriteThrottled``: Graph did not apply it (the budget now waits for Retry-After);
* 5xx, 206, timeouts, connection errors, unparsable 2xx — ``WriteUncertain``: it may have been
  applied; check before sending it again;
* other 4xx — ``GraphWriteError`` with Graph's status, error code, message and request-id.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

from agent.clock import Clock
from agent.errors import SourceError, TransientSourceError
from agent.metrics import AgentMetrics
from agent.sources.config import GraphSecuritySourceConfig
from agent.sources.graph.body import BodyError, graph_error, parse_object
from agent.sources.graph.client import BudgetTimeout, GraphClient, GraphReply
from agent.sources.graph.endpoints import endpoints_for

Entity = Literal["alert", "incident"]
COLLECTIONS: dict[Entity, str] = {"alert": "alerts_v2", "incident": "incidents"}
#: What the app needs for each entity's writes (Graph permissions reference).
WRITE_PERMISSIONS: dict[Entity, str] = {
    "alert": "SecurityAlert.ReadWrite.All",
    "incident": "SecurityIncident.ReadWrite.All",
}
COMMENT_TYPE = "microsoft.graph.security.alertComment"


@dataclass(frozen=True, slots=True)
class GraphError:
    """What Graph said when it refused: kept with the request and shown to the caller."""

    status: int
    code: str
    message: str
    request_id: str

    def describe(self) -> str:
        return f"Graph returned {self.status} {self.code}: {self.message} (request-id {self.request_id})"

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "code": self.code,
            "message": self.message,
            "requestId": self.request_id,
        }


class GraphWriteError(SourceError):
    """Graph refused the write for good (4xx other than 429)."""

    def __init__(self, error: GraphError) -> None:
        super().__init__(error.describe())
        self.error = error


class WriteThrottled(TransientSourceError):
    """429: not applied; the tenant's budget waits ``retry_after`` before the next request."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class WriteUncertain(TransientSourceError):
    """No clear answer (5xx, timeout, connection lost): Graph may or may not have applied it."""


class GraphWrites:
    """The write calls of one tenant, through its ``GraphClient``."""

    def __init__(self, client: GraphClient, graph_root: str) -> None:
        self._client = client
        self._root = graph_root.rstrip("/") + "/v1.0/security"

    def url(self, entity: Entity, target: str, *rest: str) -> str:
        """``<root>/v1.0/security/<collection>/<id>[/rest]``, the id percent-encoded."""
        return "/".join([self._root, COLLECTIONS[entity], quote(target, safe=""), *rest])

    async def update(
        self, entity: Entity, target: str, changes: dict[str, Any], wait_limit: float | None = None
    ) -> dict[str, Any]:
        """PATCH the properties in ``changes``; the updated entity as Graph returns it."""
        return await self._call("PATCH", self.url(entity, target), changes, wait_limit)

    async def comment(
        self, entity: Entity, target: str, text: str, wait_limit: float | None = None
    ) -> list[dict[str, Any]]:
        """POST one comment; every comment of the entity afterwards (Graph's answer)."""
        doc = await self._call(
            "POST",
            self.url(entity, target, "comments"),
            {"@odata.type": COMMENT_TYPE, "comment": text},
            wait_limit,
        )
        value = doc.get("value")
        return [c for c in value if isinstance(c, dict)] if isinstance(value, list) else []

    async def get(self, entity: Entity, target: str, wait_limit: float | None = None) -> dict[str, Any]:
        """GET the entity (to check whether an uncertain write was applied)."""
        return await self._call("GET", self.url(entity, target), None, wait_limit)

    async def _call(
        self, method: str, url: str, body: dict[str, Any] | None, wait_limit: float | None
    ) -> dict[str, Any]:
        """``wait_limit``: seconds the budget may hold the request back (``BudgetTimeout``: not sent)."""
        stale: str | None = None
        for fresh in (False, True):
            try:
                reply = await self._client.send(
                    method, url, body, stale_token=stale, fresh_connection=fresh, wait_limit=wait_limit
                )
            except BudgetTimeout:
                raise
            except TransientSourceError as exc:
                raise WriteUncertain(str(exc)) from None
            if reply.status == 401 and not fresh:
                stale = reply.token
                continue
            return _interpret(method, url, reply)
        raise AssertionError("unreachable")  # pragma: no cover


def _interpret(method: str, url: str, reply: GraphReply) -> dict[str, Any]:
    ids = f"request-id {reply.request_id}, client-request-id {reply.client_request_id}"
    where = f"{method} {url.split('/v1.0', 1)[-1]}"
    if reply.status == 429:
        raise WriteThrottled(f"{where}: Graph throttled (429), {ids}", reply.retry_after or 0.0)
    if reply.status >= 500 or reply.status == 206:
        raise WriteUncertain(f"{where}: Graph returned {reply.status} ({_error(reply).code}), {ids}")
    if reply.status >= 400:
        raise GraphWriteError(_error(reply))
    if not reply.body:
        return {}
    try:
        return parse_object(reply.body)  # lone surrogates and deep nesting handled as for a page
    except BodyError as exc:
        raise WriteUncertain(f"{where}: Graph returned {exc}, {ids}") from None


def _error(reply: GraphReply) -> GraphError:
    """Graph's ``{"error": {"code", "message", "innerError": {"request-id"}}}``, tolerating junk."""
    request_id = reply.request_id
    err = graph_error(reply.body)
    code = str(err.get("code") or "unknown")[:100]
    message = str(err.get("message") or "")[:500]
    inner = err.get("innerError") or err.get("innererror") or {}
    if request_id == "-" and isinstance(inner, dict) and inner.get("request-id"):
        request_id = str(inner["request-id"])[:100]
    return GraphError(reply.status, code, message, request_id)


@contextlib.asynccontextmanager
async def open_writes(
    cfg: GraphSecuritySourceConfig, clock: Clock, metrics: AgentMetrics
) -> AsyncIterator[GraphWrites]:
    """The write calls of ``cfg``'s tenant on a client of their own (closed on exit): for a one-off
    command; the running agent's writes share its sources' clients instead."""
    client = GraphClient.connect(cfg, clock, metrics)
    try:
        yield GraphWrites(client, endpoints_for(cfg).graph_root)
    finally:
        await client.aclose()
