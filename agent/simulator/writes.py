"""The simulator's write side: GET, PATCH and comments on single alerts and incidents, and app roles.

Graph semantics it follows (Microsoft Graph docs): ``security-alert-get.md`` / ``security-alert-update.md``
(``PATCH /security/alerts_v2/{id}`` with ``status``, ``classification``, ``determination``,
``assignedTo`` → 200 and the updated alert), ``security-alert-post-comments.md`` (``POST …/comments``
with ``{"@odata.type": "microsoft.graph.security.alertComment", "comment": …}`` → 200 and the full
comment list), ``security-incident-update.md`` (plus ``customTags``) and the incident comments call.

* Authorization: the token's ``roles`` (application permissions) must hold
  ``SecurityAlert.ReadWrite.All`` / ``SecurityIncident.ReadWrite.All`` for writes (the read or write
  permission for a GET); otherwise 403 with Graph's error body.
* Unknown id: 404. A body that is not an object, a property that cannot be updated or a value outside
  its enum: 400 with Graph's error body shape (``error.code``, ``error.message``,
  ``error.innerError.request-id``).
* An update that changes something, and every comment, moves ``lastUpdateDateTime`` to now (strictly
  later than before; a comment's ``createdDateTime`` is that same instant); a PATCH that changes
  nothing leaves the entity as it was. Setting an alert ``resolved`` sets ``resolvedDateTime``.
* Faults: writes go through the same refusals as reads (expired token, ``throttle()`` windows, the
  shared ``faults`` queue) and then through ``faults`` here, where ``WriteFault(apply=True)`` applies
  the write *before* answering with the canned response (a 504 after the backend committed, or an
  answer held back until the client gives up).

Every write Graph applied is in ``applied`` (method, entity, id, body), so tests can count them.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import jwt
import orjson
from aiohttp import web

from agent.timestamps import format_dt, sort_key

if TYPE_CHECKING:
    from agent.simulator.server import Fault, GraphSimulator, Seen

ROLES = (
    "SecurityAlert.Read.All",
    "SecurityAlert.ReadWrite.All",
    "SecurityIncident.Read.All",
    "SecurityIncident.ReadWrite.All",
)
ENTITIES = {"alerts_v2": "alert", "incidents": "incident"}
_PERMISSION = {"alert": "SecurityAlert", "incident": "SecurityIncident"}
#: Graph's enums as its reference documents them, written out here on purpose rather than imported
#: from ``agent.writeback.updates``: the fake must reject what Graph would even when the agent's lists
#: are wrong.
_ENUMS: dict[str, frozenset[str]] = {
    "alert.status": frozenset({"unknown", "new", "inProgress", "resolved", "unknownFutureValue"}),
    "incident.status": frozenset(
        {"active", "resolved", "inProgress", "redirected", "unknownFutureValue", "awaitingAction"}
    ),
    "classification": frozenset(
        {"unknown", "falsePositive", "truePositive", "informationalExpectedActivity", "unknownFutureValue"}
    ),
    "determination": frozenset(
        [
            "unknown",
            "apt",
            "malware",
            "securityPersonnel",
            "securityTesting",
            "unwantedSoftware",
            "other",
            "multiStagedAttack",
            "compromisedAccount",
            "phishing",
            "maliciousUserActivity",
            "notMalicious",
            "notEnoughDataToValidate",
            "confirmedActivity",
            "lineOfBusinessApplication",
            "unknownFutureValue",
        ]
    ),
}
_UPDATABLE = {
    "alert": ("status", "classification", "determination", "assignedTo"),
    "incident": ("status", "classification", "determination", "assignedTo", "customTags"),
}
_TYPES = {"alert": "alertStatus", "incident": "incidentStatus"}


def access_token(
    tenant_id: str, client_id: str, audience: str, roles: list[str], lifetime: int, key: bytes
) -> str:
    """An app-only access token as Entra ID issues it for Graph: a JWT whose ``roles`` claim lists
    the application permissions the app was granted (signed with the simulator's own key)."""
    now = int(time.time())
    claims = {
        "aud": audience,
        "iss": f"https://sts.windows.net/{tenant_id}/",
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "tid": tenant_id,
        "appid": client_id,
        "idtyp": "app",
        "roles": roles,
        "jti": secrets.token_urlsafe(8),
    }
    return jwt.encode(claims, key, algorithm="HS256")


@dataclass(slots=True)
class WriteFault:
    """A canned answer for the next write; with ``apply`` the write is applied first."""

    fault: Fault
    apply: bool = False


@dataclass(frozen=True, slots=True)
class Applied:
    """A write the simulated Graph applied."""

    method: str
    entity: str
    id: str
    body: dict[str, Any]
    at: float = field(default_factory=time.monotonic)


def _error(status: int, code: str, message: str) -> web.Response:
    request_id = str(uuid.uuid4())
    body = {
        "error": {
            "code": code,
            "message": message,
            "innerError": {"date": format_dt(datetime.now(UTC))[:19], "request-id": request_id},
        }
    }
    return web.Response(
        status=status,
        body=orjson.dumps(body),
        content_type="application/json",
        headers={"request-id": request_id},
    )


def _ok(doc: Any) -> web.Response:
    return web.Response(
        body=orjson.dumps(doc), content_type="application/json", headers={"request-id": str(uuid.uuid4())}
    )


def _later(previous: str | None) -> str:
    """Now as a Graph timestamp, strictly after ``previous``."""
    now = datetime.now(UTC)
    stamp = format_dt(now)
    if previous is not None and sort_key(stamp) <= sort_key(previous):
        stamp = format_dt(
            datetime.strptime(sort_key(previous)[:26], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC)
            + timedelta(microseconds=1)
        )
    return stamp


class SimulatorWrites:
    """Routes, roles and fault queue of the write side of one ``GraphSimulator``."""

    def __init__(self, sim: GraphSimulator) -> None:
        self.sim = sim
        self.faults: deque[WriteFault] = deque()
        self.applied: list[Applied] = []
        #: ``createdByDisplayName`` of the comments the app writes.
        self.app_display_name = "siem-agent simulator app"

    def register(self, app: web.Application) -> None:
        for collection in ENTITIES:
            base = f"/v1.0/security/{collection}/{{id}}"
            app.router.add_get(base, self._get)
            app.router.add_patch(base, self._patch)
            app.router.add_post(base + "/comments", self._comment)

    def requests(self) -> list[Seen]:
        """Requests to single alerts and incidents (GET, PATCH, comments)."""
        return [r for r in self.sim.requests if r.path.count("/") >= 4 and r.path.split("/")[3] in ENTITIES]

    # -- handlers ------------------------------------------------------------------------------

    def _target(self, request: web.Request) -> tuple[str, dict[str, dict[str, Any]]]:
        entity = ENTITIES[request.path.split("/")[3]]
        return entity, self.sim.alerts if entity == "alert" else self.sim.incidents

    async def _begin(self, request: web.Request, write: bool) -> web.Response | None:
        refused: web.Response | None = await self.sim._refusal(request)
        if refused is not None:
            return refused
        entity, _ = self._target(request)
        roles = self.sim.token_roles.get(request.headers.get("Authorization", "").removeprefix("Bearer "), [])
        needed = [f"{_PERMISSION[entity]}.ReadWrite.All"] + (
            [] if write else [f"{_PERMISSION[entity]}.Read.All"]
        )
        if not set(needed) & set(roles):
            self.sim._record(request, 403)
            return _error(403, "Forbidden", f"Missing application roles. API required roles: {needed[0]}.")
        return None

    async def _get(self, request: web.Request) -> web.Response:
        refused = await self._begin(request, write=False)
        if refused is not None:
            return refused
        entity, items = self._target(request)
        item = items.get(request.match_info["id"])
        if item is None:
            self.sim._record(request, 404)
            return _error(404, "NotFound", f"The {entity} {request.match_info['id']!r} was not found.")
        self.sim._record(request, 200)
        return _ok(item)

    async def _write(self, request: web.Request, apply: Any) -> web.Response:
        refused = await self._begin(request, write=True)
        if refused is not None:
            return refused
        entity, items = self._target(request)
        target = request.match_info["id"]
        if target not in items:
            self.sim._record(request, 404)
            return _error(404, "NotFound", f"The {entity} {target!r} was not found.")
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            self.sim._record(request, 400)
            return _error(400, "BadRequest", "The request body must be a JSON object.")
        fault = self.faults.popleft() if self.faults else None
        if fault is not None and not fault.apply:
            return await self.sim._fault(request, fault.fault)
        outcome: web.Response = apply(entity, items, target, body)
        if outcome.status == 200:
            self.applied.append(Applied(request.method, entity, target, body))
        if fault is not None:
            return await self.sim._fault(request, fault.fault)
        self.sim._record(request, outcome.status)
        return outcome

    async def _patch(self, request: web.Request) -> web.Response:
        return await self._write(request, self._update)

    async def _comment(self, request: web.Request) -> web.Response:
        return await self._write(request, self._add_comment)

    # -- Graph's semantics ---------------------------------------------------------------------

    def _update(
        self, entity: str, items: dict[str, dict[str, Any]], target: str, body: dict[str, Any]
    ) -> web.Response:
        for key, value in body.items():
            if key not in _UPDATABLE[entity]:
                return _error(
                    400,
                    "BadRequest",
                    f"Property '{key}' cannot be updated on microsoft.graph.security.{entity}.",
                )
            enum = _ENUMS.get(f"{entity}.{key}") or _ENUMS.get(key)
            if enum is not None and value not in enum:
                kind = _TYPES[entity] if key == "status" else f"alert{key.title()}"
                return _error(
                    400,
                    "BadRequest",
                    f"Requested value '{value}' was not found in microsoft.graph.security.{kind}.",
                )
            if key == "assignedTo" and value is not None and not isinstance(value, str):
                return _error(400, "BadRequest", "assignedTo must be a string or null.")
            if key == "customTags" and not (
                isinstance(value, list) and all(isinstance(t, str) for t in value)
            ):
                return _error(400, "BadRequest", "customTags must be a collection of strings.")
        item = dict(items[target])
        changed = {k: v for k, v in body.items() if item.get(k) != v}
        if changed:
            item.update(changed)
            item["lastUpdateDateTime"] = _later(item.get("lastUpdateDateTime"))
            if entity == "alert" and changed.get("status") == "resolved":
                item["resolvedDateTime"] = item["lastUpdateDateTime"]
            items[target] = item
        return _ok(item)

    def _add_comment(
        self, entity: str, items: dict[str, dict[str, Any]], target: str, body: dict[str, Any]
    ) -> web.Response:
        text = body.get("comment")
        if not isinstance(text, str) or not text:
            return _error(400, "BadRequest", "The comment property is required.")
        item = dict(items[target])
        stamp = _later(item.get("lastUpdateDateTime"))
        comments = [
            *item.get("comments", []),
            {"comment": text, "createdByDisplayName": self.app_display_name, "createdDateTime": stamp},
        ]
        item["comments"] = comments
        item["lastUpdateDateTime"] = stamp
        items[target] = item
        collection = "alerts_v2" if entity == "alert" else "incidents"
        context = f"https://graph.microsoft.com/v1.0/$metadata#security/{collection}('{target}')/comments"
        return _ok({"@odata.context": context, "value": comments})
