"""A fake Azure Monitor Logs Ingestion API plus the Entra ID token endpoint it needs (HTTPS, 127.0.0.1).

Our own reading of Microsoft's documentation, not Azure: ``azure-monitor/logs/logs-ingestion-api-overview``
(``POST {endpoint}/dataCollectionRules/{dcrImmutableId}/streams/{stream}?api-version=2023-01-01``,
bearer token for ``https://monitor.azure.com``, JSON array body, optional gzip, 204 on success), its
service-limits table (1 MB per call, 429 with ``Retry-After``, 413 over the limit) and
``identity-platform/v2-oauth2-client-creds-grant-flow`` for the token endpoint (MSAL needs HTTPS and
the OIDC discovery document). Errors use Azure's ``{"error": {"code", "message"}}`` shape.
``faults`` queues whole replies for the next ingestion calls; ``expire_tokens()`` makes every issued
token answer 401; ``forbidden`` answers 403 (app lacks *Monitoring Metrics Publisher*). Besides the
client secret, the token endpoint takes client assertions (``private_key_jwt``) signed by a certificate
given to ``register_certificate`` (verified as the Graph simulator does) or listed in
``federated_assertions`` (workload identity).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import secrets
import ssl
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from agent.simulator.server import certificate_assertion_ok, certificate_thumbprints
from agent.simulator.tls import make_tls
from tests.fakes.transports import abort

TENANT = "00000000-0000-4000-8000-00000000feed"
CLIENT_ID = "11111111-1111-4111-8111-111111111111"
CLIENT_SECRET = "li-client-secret-7c2b-do-not-log"
DCR = "dcr-0123456789abcdef0123456789abcdef"
STREAM = "Custom-GraphAlerts_CL"
LIMIT = 1_000_000
SCOPES = {"https://monitor.azure.com/.default", "https://monitor.azure.com//.default"}
_JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass
class Fault:
    status: int
    code: str
    headers: dict[str, str] = field(default_factory=dict)

    def response(self) -> web.Response:
        body = {"error": {"code": self.code, "message": f"{self.code} (fake)"}}
        return web.json_response(body, status=self.status, headers=self.headers)


THROTTLED = Fault(429, "TooManyRequests", {"Retry-After": "0"})
UNAVAILABLE = Fault(503, "ServiceUnavailable")
INVALID = Fault(400, "InvalidContent")


class FakeLogsIngestion:
    """State and handlers: one tenant, one app, one DCR with one stream."""

    def __init__(self, tls_dir: Path) -> None:
        self.tls = make_tls(tls_dir)
        self.tokens: set[str] = set()
        self.token_requests = 0
        #: Certificates whose keys may sign client assertions: thumbprint -> PEM.
        self.certificates: dict[str, bytes] = {}
        #: Federated tokens (workload identity) accepted as client assertions.
        self.federated_assertions: set[str] = set()
        #: How each successful token request authenticated: "secret" or "assertion".
        self.grants: list[str] = []
        self.forbidden = False
        #: Set: the token endpoint answers 307 to this URL (a hijacked or misconfigured authority).
        self.token_redirect: str | None = None
        #: Set: discovery for any other tenant answers 400 AADSTS90002, as Entra ID does.
        self.known_tenants_only = False
        #: Cleared: every ingestion call waits (for cancellation tests).
        self.hold = asyncio.Event()
        self.hold.set()
        self.waiting = asyncio.Event()  # set when a call reaches the hold
        self.faults: deque[Fault] = deque()
        self.rows: list[dict[str, Any]] = []
        self.calls: list[int] = []  # uncompressed body size of every accepted call
        self.statuses: list[int] = []
        self._runner: web.AppRunner | None = None
        self._transports: set[Any] = set()
        self.url = ""

    def expire_tokens(self) -> None:
        self.tokens.clear()

    def register_certificate(self, cert_pem: bytes) -> None:
        """Accept client assertions signed by this certificate's key (as if uploaded to the app)."""
        self.certificates.update(dict.fromkeys(certificate_thumbprints(cert_pem), cert_pem))

    def _credential_ok(self, form: Any, tenant: str) -> tuple[bool, str]:
        assertion = form.get("client_assertion")
        if isinstance(assertion, str) and form.get("client_assertion_type") == _JWT_BEARER:
            audience = f"{self.url}/{tenant}/oauth2/v2.0/token"
            ok = assertion in self.federated_assertions or certificate_assertion_ok(
                assertion, self.certificates, audience, CLIENT_ID
            )
            return ok, "assertion"
        return form.get("client_secret") == CLIENT_SECRET, "secret"

    async def _oidc(self, request: web.Request) -> web.Response:
        tenant = request.match_info["tenant"]
        if self.known_tenants_only and tenant != TENANT:
            description = f"AADSTS90002: Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID."
            return web.json_response(
                {"error": "invalid_tenant", "error_description": description}, status=400
            )
        base = f"{self.url}/{tenant}"
        return web.json_response(
            {
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "issuer": f"{base}/v2.0",
                "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
            }
        )

    async def _token(self, request: web.Request) -> web.Response:
        self.token_requests += 1
        if self.token_redirect is not None:
            raise web.HTTPTemporaryRedirect(self.token_redirect)
        form = await request.post()
        credential_ok, how = self._credential_ok(form, request.match_info["tenant"])
        ok = (
            request.match_info["tenant"] == TENANT
            and form.get("grant_type") == "client_credentials"
            and form.get("client_id") == CLIENT_ID
            and credential_ok
        )
        if not ok:
            description = (
                "AADSTS700027: Client assertion failed signature validation."
                if how == "assertion"
                else "AADSTS7000215: Invalid client secret provided."
            )
            return web.json_response(
                {"error": "invalid_client", "error_description": description}, status=401
            )
        if form.get("scope") not in SCOPES:
            return web.json_response(
                {
                    "error": "invalid_scope",
                    "error_description": "AADSTS70011: The provided scope is invalid.",
                },
                status=400,
            )
        token = secrets.token_urlsafe(24)
        self.tokens.add(token)
        self.grants.append(how)
        return web.json_response(
            {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token}
        )

    async def _ingest(self, request: web.Request) -> web.Response:
        resp = await self._ingest_inner(request)
        self.statuses.append(resp.status)
        return resp

    async def _ingest_inner(self, request: web.Request) -> web.Response:
        self.waiting.set()
        await self.hold.wait()
        if request.query.get("api-version") != "2023-01-01":
            return Fault(400, "InvalidApiVersion").response()
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth.removeprefix("Bearer ") not in self.tokens:
            return Fault(401, "InvalidToken").response()
        if self.forbidden:
            return Fault(403, "OperationFailed").response()
        if request.match_info["dcr"] != DCR:
            return Fault(404, "DcrNotFound").response()
        if request.match_info["stream"] != STREAM:
            return Fault(400, "InvalidStream").response()
        if self.faults:
            return self.faults.popleft().response()
        if not request.headers.get("Content-Type", "").startswith("application/json"):
            return Fault(415, "UnsupportedMediaType").response()
        raw = await request.read()
        if len(raw) > LIMIT:
            return Fault(413, "ContentLengthLimitExceeded").response()
        if request.headers.get("Content-Encoding") == "gzip" and raw[:2] == b"\x1f\x8b":
            try:
                raw = gzip.decompress(raw)
            except (OSError, EOFError):
                return Fault(400, "InvalidContentEncoding").response()
        if len(raw) > LIMIT:
            return Fault(413, "ContentLengthLimitExceeded").response()
        try:
            rows = json.loads(raw)
        except ValueError:
            return Fault(400, "InvalidContent").response()
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            return Fault(400, "InvalidContent").response()
        self.rows.extend(rows)
        self.calls.append(len(raw))
        return web.Response(status=204)

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.tls.cert, self.tls.key)
        return ctx

    async def start(self) -> str:
        @web.middleware
        async def track(request: web.Request, handler: Any) -> web.StreamResponse:
            if request.transport is not None:
                self._transports.add(request.transport)
            return await handler(request)

        app = web.Application(client_max_size=4 * LIMIT, middlewares=[track])
        app.router.add_get("/{tenant}/v2.0/.well-known/openid-configuration", self._oidc)
        app.router.add_post("/{tenant}/oauth2/v2.0/token", self._token)
        app.router.add_post("/dataCollectionRules/{dcr}/streams/{stream}", self._ingest)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.ssl_context())
        await site.start()
        self.url = f"https://127.0.0.1:{self._runner.addresses[0][1]}"
        return self.url

    async def stop(self) -> None:
        self.hold.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        # Server-side TLS connections whose client went away may still be in their TLS shutdown.
        for transport in self._transports:
            abort(transport)
        self._transports.clear()

    def sink_table(self, **over: Any) -> dict[str, Any]:
        table: dict[str, Any] = {
            "type": "logs_ingestion",
            "name": "sentinel",
            "endpoint": self.url,
            "dcr_immutable_id": DCR,
            "stream": STREAM,
            "tenant_id": TENANT,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "authority_host": self.url,
            "tls": {"ca_file": str(self.tls.ca_cert)},
            "timeout_secs": 10,
        }
        table.update(over)
        return table


@pytest.fixture
async def fake_logs(tmp_path: Path) -> AsyncIterator[FakeLogsIngestion]:
    fake = FakeLogsIngestion(tmp_path / "li-tls")
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()
