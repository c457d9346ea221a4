"""Graph simulator: an Entra ID-style token endpoint plus ``/security/alerts_v2`` and ``/security/incidents``.

Documents it follows (Microsoft Graph docs, ``microsoftgraph/microsoft-graph-docs-contrib``):

* ``concepts/auth-v2-service.md`` — OAuth 2.0 client credentials: ``POST /{tenant}/oauth2/v2.0/token``
  with ``client_secret`` or a ``client_assertion`` (``urn:ietf:params:oauth:client-assertion-type:
  jwt-bearer``) → ``token_type``, ``expires_in``, ``access_token``; failures as ``error`` /
  ``error_description`` carrying an AADSTS code. The OIDC discovery document MSAL reads first.
  Certificate assertions are verified like Entra does: ``x5t#S256`` (or ``x5t``) names a registered
  certificate, the signature (PS256/RS256) must verify with its key, ``aud`` is the token endpoint and
  ``iss`` = ``sub`` = the client id. Federated (workload identity) assertions are accepted when listed.
* ``api/security-list-alerts_v2.md`` and ``api/security-list-incidents.md`` — ``$filter`` with
  ``lastUpdateDateTime``/``createdDateTime`` ``ge``/``gt``/``le``/``lt`` and ``serviceSource eq '…'``
  joined by ``and``; ``$top``; ``$count=true`` → ``@odata.count``; ``@odata.nextLink`` paging (an
  offset ``$skiptoken``, like the ``$skip`` paging these APIs use); newest first; 7-digit timestamps;
  ``$expand=alerts`` on incidents.
* Access tokens are JWTs whose ``roles`` claim lists the app's application permissions (``roles``;
  all four security read/write permissions by default), as Entra ID issues them for Graph.
* Single alerts and incidents: ``GET``, ``PATCH`` and ``POST …/comments`` with Graph's semantics and
  write faults (``agent.simulator.writes``).
* ``concepts/throttling.md`` — 429 with the documented body and ``Retry-After``;
  ``concepts/errors.md`` / ``best-practices-concept.md`` — 503/504; every response has ``request-id``.

Faults for tests: a queue of canned responses (429, 5xx, malformed JSON, slow responses that provoke
client timeouts, any raw body and headers: gzip bombs, redirects, pages nested 10,000 deep), a
throttle window, a deep-paging stall (``$skiptoken`` beyond ``max_skip`` refused or hung), token
expiry, revoked credentials, alerts hidden until "ingested" late, hooks called after each served page
(to change data mid-pagination), and rewritten nextLinks (a liar's: another host, the same link
forever). ``requests`` logs every request with its arrival time on the simulator's ``monotonic``
clock (``time.monotonic`` unless a test shares a scaled clock with the agent) and its client port.
Alert values may be ``orjson.Fragment``s (raw JSON written as is: an alert nested 1000 levels deep).
Used by ``siem-agent demo`` and the tests.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import random
import secrets
import ssl
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import orjson
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from agent.simulator.alerts import make_alert, make_incident, update_alert
from agent.simulator.backlog import SyntheticBacklog
from agent.simulator.odata import list_page, next_link
from agent.simulator.writes import ROLES, SimulatorWrites, access_token
from agent.timestamps import format_dt

_JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
GRAPH_PATHS = ("/v1.0/security/alerts_v2", "/v1.0/security/incidents")


@dataclass(slots=True)
class Fault:
    """A canned response for the next Graph (or token) request."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    #: Hold the response this long first (to provoke client timeouts).
    delay_secs: float = 0.0


@dataclass(slots=True)
class Seen:
    """One request the simulator received (for assertions)."""

    at: float
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    status: int
    #: The client's TCP port: a new port means a new connection.
    peer_port: int = 0
    #: The tenant and app of the bearer token (Graph requests) or of the token request; ``""`` if none.
    tenant: str = ""
    client_id: str = ""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _error(status: int, code: str, message: str) -> web.Response:
    body = {"error": {"code": code, "message": message, "innerError": {"request-id": str(uuid.uuid4())}}}
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


class GraphSimulator:
    """One tenant with one app registration and an evolving set of alerts and incidents.

    With ``any_tenant`` it stands for any number of tenants: a token is issued for any tenant id and
    any client id (the secret must still match), and a Graph request lists only the alerts and
    incidents of its token's tenant (``add_alerts(..., tenant=…)``); every ``Seen`` names the tenant
    and app, so a test can tell who polled whom.
    """

    def __init__(
        self,
        tenant_id: str = "00000000-0000-4000-8000-000000000001",
        client_id: str = "00000000-0000-4000-8000-0000000000a1",
        client_secret: str = "simulator-secret",  # noqa: S107 - the fake tenant's secret
        seed: int = 7,
        token_lifetime_secs: int = 3599,
        default_page_size: int = 100,
        monotonic: Callable[[], float] = time.monotonic,
        any_tenant: bool = False,
    ) -> None:
        self.tenant_id = tenant_id
        self.any_tenant = any_tenant
        #: Who each token was issued to: token -> (tenant, client id).
        self.token_owner: dict[str, tuple[str, str]] = {}
        #: The clock of ``Seen.at``, token expiry and throttling (tests share a scaled one with the agent).
        self.monotonic = monotonic
        self.client_id = client_id
        self.client_secret = client_secret
        self.rng = random.Random(seed)
        self.token_lifetime_secs = token_lifetime_secs
        self.default_page_size = default_page_size
        self.alerts: dict[str, dict[str, Any]] = {}
        self.incidents: dict[str, dict[str, Any]] = {}
        self.hidden: set[str] = set()
        self.tokens: dict[str, float] = {}
        self.revoked = False
        self.faults: deque[Fault] = deque()
        self.token_faults: deque[Fault] = deque()
        self.requests: list[Seen] = []
        #: Certificates whose keys may sign client assertions: thumbprint (x5t / x5t#S256) -> PEM.
        self.certificates: dict[str, bytes] = {}
        #: Federated tokens (workload identity) accepted as client assertions.
        self.federated_assertions: set[str] = set()
        #: ``$skiptoken`` offsets above this are refused (deep-paging stall); ``None``: no limit.
        self.max_skip: int | None = None
        #: How a deep-paging stall shows: ``"error"`` (HTTP 400) or ``"hang"`` (no answer for 30 s).
        self.stall_mode = "error"
        #: Called as ``hook(simulator, seen)`` after each page served with 200.
        self.hooks: list[Callable[[GraphSimulator, Seen], None]] = []
        #: A liar's nextLinks: every ``@odata.nextLink`` served passes through this (tests of what the
        #: agent refuses to follow: another host, plain http, the same link forever).
        self.rewrite_next_link: Callable[[str], str] | None = None
        #: Performance option (benchmarks): when set, ``alerts_v2`` lists this static, lazily rendered
        #: backlog instead of ``alerts`` (faults, throttling, auth and hooks apply as usual).
        self.backlog: SyntheticBacklog | None = None
        #: Application permissions the app was granted: the ``roles`` claim of every token issued.
        self.roles: list[str] = list(ROLES)
        self.token_roles: dict[str, list[str]] = {}
        self._signing_key = secrets.token_bytes(32)
        #: Single alerts and incidents: GET, PATCH, comments (``agent.simulator.writes``).
        self.writes = SimulatorWrites(self)
        self._throttle_until = 0.0
        self._closing = asyncio.Event()
        self._seq = 0
        self._runner: web.AppRunner | None = None
        self._generator: asyncio.Task[None] | None = None
        self.base_url = ""

    # -- data --------------------------------------------------------------------------------

    def add_alerts(
        self, n: int, when: datetime | None = None, hidden: bool = False, tenant: str | None = None
    ) -> list[dict[str, Any]]:
        """Create ``n`` new alerts stamped ``when`` (default now) in ``tenant`` (default the simulator's);
        ``hidden`` ones are not listed yet."""
        when = when or datetime.now(UTC)
        made = []
        for _ in range(n):
            self._seq += 1
            alert = make_alert(self.rng, tenant or self.tenant_id, when, self._seq)
            self.alerts[alert["id"]] = alert
            if hidden:
                self.hidden.add(alert["id"])
            made.append(alert)
        return made

    def update(self, alert_id: str, when: datetime | None = None) -> dict[str, Any]:
        """Give ``alert_id`` a new version stamped ``when`` (default now)."""
        new = update_alert(self.rng, self.alerts[alert_id], when or datetime.now(UTC))
        self.alerts[alert_id] = new
        return new

    def add_incidents(self, n: int, when: datetime | None = None) -> list[dict[str, Any]]:
        """Create ``n`` incidents stamped ``when`` (default now)."""
        when = when or datetime.now(UTC)
        made = []
        for _ in range(n):
            self._seq += 1
            incident = make_incident(self.rng, self.tenant_id, when, self._seq)
            self.incidents[incident["id"]] = incident
            made.append(incident)
        return made

    def update_incident(self, incident_id: str, when: datetime | None = None) -> dict[str, Any]:
        """Give an incident a new version stamped ``when`` (default now)."""
        new = dict(self.incidents[incident_id])
        new["status"] = "inProgress" if new["status"] == "active" else "resolved"
        new["lastUpdateDateTime"] = format_dt(when or datetime.now(UTC))
        self.incidents[incident_id] = new
        return new

    def publish(self, alert_id: str) -> None:
        """Make a hidden alert visible (late ingestion: its timestamp may be behind the cursor)."""
        self.hidden.discard(alert_id)

    def expire_tokens(self) -> None:
        """Every issued token stops working (as at expiry)."""
        self.tokens.clear()

    def throttle(self, seconds: float) -> None:
        """Answer every Graph request with 429 for ``seconds`` (``Retry-After``: the time left)."""
        self._throttle_until = self.monotonic() + seconds

    def register_certificate(self, cert_pem: bytes) -> None:
        """Accept client assertions signed by this certificate's key (as if uploaded to the app)."""
        self.certificates.update(dict.fromkeys(certificate_thumbprints(cert_pem), cert_pem))

    def graph_requests(self) -> list[Seen]:
        """Requests to the Graph collections (not the token endpoint)."""
        return [r for r in self.requests if r.path in GRAPH_PATHS]

    def token_requests(self) -> list[Seen]:
        """Requests to the token endpoint."""
        return [r for r in self.requests if r.path.endswith("/oauth2/v2.0/token")]

    async def generate(self, per_second: float, update_ratio: float = 0.2) -> None:
        """Create alerts (and update some) at ``per_second`` until cancelled."""
        interval = 1.0 / per_second
        while True:
            await asyncio.sleep(interval)
            if self.alerts and self.rng.random() < update_ratio:
                self.update(self.rng.choice(list(self.alerts)))
            else:
                self.add_alerts(1)

    # -- HTTP --------------------------------------------------------------------------------

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application()
        app.router.add_get("/{tenant}/v2.0/.well-known/openid-configuration", self._oidc)
        app.router.add_post("/{tenant}/oauth2/v2.0/token", self._token)
        app.router.add_get(GRAPH_PATHS[0], self._alerts)
        app.router.add_get(GRAPH_PATHS[1], self._incidents)
        self.writes.register(app)
        return app

    async def start(self, ssl_context: ssl.SSLContext | None, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on ``host:port`` (0: a free port); return the base URL."""
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=ssl_context)
        await site.start()
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        bound = sockets[0].getsockname()[1]
        scheme = "https" if ssl_context is not None else "http"
        self.base_url = f"{scheme}://{host}:{bound}"
        return self.base_url

    def start_generator(self, per_second: float) -> None:
        """Generate alerts in the background (``stop`` ends it)."""
        self._generator = asyncio.create_task(self.generate(per_second), name="simulator:generate")

    async def stop(self) -> None:
        """Stop generating and serving (held responses are released first)."""
        self._closing.set()
        if self._generator is not None:
            self._generator.cancel()
            await asyncio.gather(self._generator, return_exceptions=True)
        if self._runner is not None:
            server = self._runner.server
            # Drop client connections outright: a TLS close handshake still running when the test's
            # event loop ends would leave the socket unclosed.
            for handler in server.connections if server is not None else []:
                if handler.transport is not None:
                    handler.transport.abort()
            await self._runner.cleanup()
            self._runner = None

    def _record(self, request: web.Request, status: int, owner: tuple[str, str] | None = None) -> Seen:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if owner is None:
            token = request.headers.get("Authorization", "").removeprefix("Bearer ")
            owner = self.token_owner.get(token, ("", ""))
        seen = Seen(
            self.monotonic(),
            request.method,
            request.path,
            dict(request.query),
            dict(request.headers),
            status,
            int(peer[1]) if peer else 0,
            *owner,
        )
        self.requests.append(seen)
        return seen

    async def _oidc(self, request: web.Request) -> web.Response:
        tenant = request.match_info["tenant"]
        base = f"{self.base_url}/{tenant}"
        doc = {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "issuer": f"{base}/v2.0",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
        }
        self._record(request, 200)
        return web.json_response(doc)

    def _assertion_ok(self, assertion: str, tenant: str) -> bool:
        if assertion in self.federated_assertions:
            return True
        audience = f"{self.base_url}/{tenant}/oauth2/v2.0/token"
        return certificate_assertion_ok(assertion, self.certificates, audience, self.client_id)

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if self.token_faults:
            return await self._fault(request, self.token_faults.popleft())
        tenant = request.match_info["tenant"]
        assertion = form.get("client_assertion")
        if isinstance(assertion, str) and form.get("client_assertion_type") == _JWT_BEARER:
            credential_ok = self._assertion_ok(assertion, tenant)
            code, text = 700027, "Client assertion failed signature validation."
        else:
            credential_ok = form.get("client_secret") == self.client_secret
            code, text = (
                7000215,
                (
                    "Invalid client secret provided. Ensure the secret being sent in the request is the "
                    "client secret value, not the client secret ID."
                ),
            )
        client = str(form.get("client_id", ""))
        ok = (
            (tenant == self.tenant_id or self.any_tenant)
            and form.get("grant_type") == "client_credentials"
            and (client == self.client_id or (self.any_tenant and bool(client)))
            and credential_ok
            and not self.revoked
        )
        if not ok:
            self._record(request, 401, (tenant, client))
            body = {
                "error": "invalid_client",
                "error_description": f"AADSTS{code}: {text}",
                "error_codes": [code],
            }
            return web.json_response(body, status=401)
        token = access_token(
            tenant, client, self.base_url, self.roles, self.token_lifetime_secs, self._signing_key
        )
        self.tokens[token] = self.monotonic() + self.token_lifetime_secs
        self.token_roles[token] = list(self.roles)
        self.token_owner[token] = (tenant, client)
        self._record(request, 200, (tenant, client))
        return web.json_response(
            {
                "token_type": "Bearer",
                "expires_in": self.token_lifetime_secs,
                "ext_expires_in": self.token_lifetime_secs,
                "access_token": token,
            }
        )

    async def _fault(self, request: web.Request, fault: Fault) -> web.Response:
        self._record(request, fault.status)
        if fault.delay_secs:
            with contextlib.suppress(TimeoutError):  # held until the delay passes or the simulator stops
                await asyncio.wait_for(self._closing.wait(), fault.delay_secs)
        headers = {"request-id": str(uuid.uuid4()), **fault.headers}
        return web.Response(
            status=fault.status, body=fault.body, headers=headers, content_type="application/json"
        )

    def _authorized(self, request: web.Request) -> bool:
        auth = request.headers.get("Authorization", "")
        expiry = self.tokens.get(auth.removeprefix("Bearer "))
        return auth.startswith("Bearer ") and expiry is not None and expiry >= self.monotonic()

    def _visible_to(self, request: web.Request) -> Callable[[dict[str, Any]], bool]:
        """Whether an item belongs to the request's tenant (always, unless ``any_tenant``)."""
        if not self.any_tenant:
            return lambda _item: True
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        tenant = self.token_owner.get(token, ("", ""))[0]
        return lambda item: item.get("tenantId") == tenant

    async def _alerts(self, request: web.Request) -> web.Response:
        if self.backlog is not None:
            return await self._list_backlog(request, self.backlog)
        mine = self._visible_to(request)
        items = [a for a in self.alerts.values() if a.get("id") not in self.hidden and mine(a)]
        return await self._list(request, items, "security/alerts_v2")

    async def _incidents(self, request: web.Request) -> web.Response:
        mine = self._visible_to(request)
        items = [i for i in self.incidents.values() if mine(i)]
        if request.query.get("$expand") == "alerts":
            items = [
                {**i, "alerts": [a for a in self.alerts.values() if a["incidentId"] == i["id"]]}
                for i in items
            ]
        return await self._list(request, items, "security/incidents")

    async def _refusal(self, request: web.Request) -> web.Response | None:
        """The answer to a Graph request that is not served normally (auth, throttle, faults), if any."""
        if not self._authorized(request):
            self._record(request, 401)
            return _error(401, "InvalidAuthenticationToken", "Access token has expired or is not yet valid.")
        left = self._throttle_until - self.monotonic()
        if left > 0:
            return await self._fault(request, throttled(f"{left:.3f}"))
        if self.faults:
            return await self._fault(request, self.faults.popleft())
        return None

    def _next_link(self, request: web.Request, skip: int) -> str:
        """The ``@odata.nextLink`` of the page after this one: same query, ``$skiptoken`` moved on."""
        link = next_link(f"{self.base_url}{request.path}", request.query, skip)
        return self.rewrite_next_link(link) if self.rewrite_next_link is not None else link

    async def _list_backlog(self, request: web.Request, backlog: SyntheticBacklog) -> web.Response:
        refused = await self._refusal(request)
        if refused is not None:
            return refused
        q = request.query
        try:
            top = int(q.get("$top", self.default_page_size))
            skip = int(q.get("$skiptoken", "0"))
            value, total = backlog.page(q.get("$filter", ""), skip, top)
        except ValueError as exc:
            self._record(request, 400)
            return _error(400, "BadRequest", f"Invalid request: {exc}")
        parts = [b'{"@odata.context":"https://graph.microsoft.com/v1.0/$metadata#security/alerts_v2"']
        if q.get("$count") == "true":
            parts.append(b',"@odata.count":%d' % total)
        parts += [b',"value":', value]
        if skip + top < total:
            parts += [b',"@odata.nextLink":', orjson.dumps(self._next_link(request, skip + top))]
        parts.append(b"}")
        seen = self._record(request, 200)
        for hook in list(self.hooks):
            hook(self, seen)
        return web.Response(
            body=b"".join(parts), content_type="application/json", headers={"request-id": str(uuid.uuid4())}
        )

    async def _list(self, request: web.Request, items: list[dict[str, Any]], entity: str) -> web.Response:
        refused = await self._refusal(request)
        if refused is not None:
            return refused
        q = request.query
        try:
            skip = int(q.get("$skiptoken", "0"))
        except ValueError as exc:
            self._record(request, 400)
            return _error(400, "BadRequest", f"Invalid request: {exc}")
        if self.max_skip is not None and skip > self.max_skip:
            if self.stall_mode == "hang":
                return await self._fault(request, Fault(200, b"{}", delay_secs=30.0))
            self._record(request, 400)
            return _error(400, "BadRequest", "SkipToken is not allowed beyond this offset.")
        try:
            page, _ = list_page(items, q, f"{self.base_url}{request.path}", self.default_page_size)
        except ValueError as exc:
            self._record(request, 400)
            return _error(400, "BadRequest", f"Invalid request: {exc}")
        if "@odata.nextLink" in page and self.rewrite_next_link is not None:
            page["@odata.nextLink"] = self.rewrite_next_link(page["@odata.nextLink"])
        doc = {"@odata.context": f"https://graph.microsoft.com/v1.0/$metadata#{entity}", **page}
        seen = self._record(request, 200)
        body = orjson.dumps(doc)  # serialized before hooks change the data
        for hook in list(self.hooks):
            hook(self, seen)
        return web.Response(
            body=body, content_type="application/json", headers={"request-id": str(uuid.uuid4())}
        )


def throttled(retry_after: str = "2") -> Fault:
    """A 429 with Graph's documented body and a ``Retry-After`` header."""
    body = {
        "error": {
            "code": "TooManyRequests",
            "innerError": {"code": "429", "message": "Please retry after", "status": "429"},
            "message": "Please retry again later.",
        }
    }
    return Fault(429, orjson.dumps(body), {"Retry-After": retry_after})


def unavailable(status: int = 503, retry_after: str | None = None) -> Fault:
    """A 503/504 as Graph sends it (optionally with ``Retry-After``)."""
    headers = {"Retry-After": retry_after} if retry_after else {}
    code = "serviceNotAvailable" if status == 503 else "gatewayTimeout"
    return Fault(status, orjson.dumps({"error": {"code": code, "message": "Try again later."}}), headers)


def server_ssl_context(cert: str, key: str) -> ssl.SSLContext:
    """A TLS server context (TLS 1.2+) for the simulator."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx


def backdate(seconds: float) -> datetime:
    """Now minus ``seconds`` (for late-ingestion scenarios)."""
    return datetime.now(UTC) - timedelta(seconds=seconds)


def certificate_thumbprints(cert_pem: bytes) -> list[str]:
    """The ``x5t#S256`` and ``x5t`` values (unpadded base64url) an assertion names this certificate by."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    return [
        _b64url(cert.fingerprint(hashes.SHA256())),
        _b64url(cert.fingerprint(hashes.SHA1())),  # noqa: S303 - x5t is SHA-1
    ]


def certificate_assertion_ok(
    assertion: str, certificates: dict[str, bytes], audience: str, client_id: str
) -> bool:
    """Whether ``assertion`` is a client assertion for ``client_id`` and ``audience`` (the token
    endpoint), signed (PS256/RS256) by the key of a registered certificate (thumbprint -> PEM)."""
    try:
        header = jwt.get_unverified_header(assertion)
    except jwt.PyJWTError:
        return False
    thumb = header.get("x5t#S256") or header.get("x5t")
    pem = certificates.get(str(thumb).rstrip("="))  # MSAL pads base64url
    if pem is None:
        return False
    key = x509.load_pem_x509_certificate(pem).public_key()
    try:
        claims = jwt.decode(
            assertion,
            key,  # type: ignore[arg-type]
            algorithms=["PS256", "RS256"],
            audience=audience,
            issuer=client_id,
            options={"require": ["exp", "aud", "iss", "sub"]},
        )
    except jwt.PyJWTError:
        return False
    return claims.get("sub") == client_id


def thumbprint_sha1(cert_pem: bytes) -> str:
    """The SHA-1 thumbprint (hex) of a PEM certificate, as the Azure portal shows it."""
    return x509.load_pem_x509_certificate(cert_pem).fingerprint(hashes.SHA1()).hex()  # noqa: S303
