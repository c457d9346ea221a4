"""Graph HTTP client for one (tenant, app): bearer auth, the shared rate budget, retries.

Every request carries ``Prefer: include-unknown-enum-members`` (so new enum members are not masked
as ``unknownFutureValue``) and a fresh ``client-request-id``; Graph's ``request-id`` is logged with
every error. Bodies are parsed with orjson into plain dicts (nothing renamed or dropped).

Response handling (Graph docs: ``concepts/throttling.md``, ``best-practices-concept.md``, ``errors.md``):

* 429 — block the tenant's whole budget for exactly ``Retry-After`` (seconds, fractional, or an
  HTTP-date; 10 s if absent), then retry the same request (bounded);
* 5xx, timeouts, connection errors, malformed bodies — exponential backoff with full jitter, bounded
  attempts, and the retry goes over a *new* connection (a ``force_close`` session), as Graph asks
  after a 503; a ``Retry-After`` on a 5xx is honoured as a minimum;
* 401 — a fresh token once (the expired one is dropped), then the request again;
* other 4xx — ``GraphStatusError`` with Graph's error code: the caller decides (no retry here).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import ssl
import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from agent.clock import Clock
from agent.entra import ClientCredential
from agent.errors import SourceError, ThrottledError, TransientSourceError
from agent.metrics import AgentMetrics
from agent.proxies import env_proxy
from agent.retry import backoff, parse_retry_after
from agent.sources.config import GraphSecuritySourceConfig
from agent.sources.graph.budget import RateBudget
from agent.sources.graph.endpoints import graph_credential
from agent.sources.graph.share import Kind

log = logging.getLogger(__name__)

#: Consecutive 429s on one request before the poll gives up (the budget stays blocked meanwhile).
MAX_THROTTLED = 10
DEFAULT_RETRY_AFTER_SECS = 10.0


class GraphStatusError(SourceError):
    """Graph answered a 4xx other than 401 (after refresh) and 429; ``status`` and ``code`` say which."""

    def __init__(self, message: str, status: int, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def make_ssl_context(ca_bundle: str | None) -> ssl.SSLContext:
    """TLS context trusting ``ca_bundle`` (or the system store)."""
    return ssl.create_default_context(cafile=ca_bundle) if ca_bundle else ssl.create_default_context()


class GraphClient:
    """Issues GETs against one tenant's Graph endpoint; owns its two HTTP sessions."""

    @classmethod
    def connect(cls, cfg: GraphSecuritySourceConfig, clock: Clock, metrics: AgentMetrics) -> GraphClient:
        """The client of ``cfg``'s tenant and app with its credential (MSAL token cache) and request
        budget: the one place they are built. Sessions open on the first request; ``aclose`` them."""
        return cls(
            cfg, graph_credential(cfg, clock), RateBudget(cfg.requests_per_minute, clock), metrics, clock
        )

    def __init__(
        self,
        cfg: GraphSecuritySourceConfig,
        credential: ClientCredential,
        budget: RateBudget,
        metrics: AgentMetrics,
        clock: Clock,
    ) -> None:
        self._cfg = cfg
        #: The app's token source (``token()`` proves the credential on its own).
        self.credential = credential
        #: The (tenant, app) request budget every request of this client spends.
        self.budget = budget
        self._m = metrics
        self._clock = clock
        self._tenant = cfg.tenant_id
        self._timeout = aiohttp.ClientTimeout(total=cfg.request_timeout_secs)
        self._proxy = cfg.proxy_url.get_secret_value() if cfg.proxy_url else None
        self._ssl = make_ssl_context(str(cfg.ca_bundle) if cfg.ca_bundle else None)
        self._gate = asyncio.Semaphore(cfg.max_concurrent_requests)
        self._rng = random.Random()
        self._session: aiohttp.ClientSession | None = None
        self._fresh: aiohttp.ClientSession | None = None

    def _sessions(self) -> tuple[aiohttp.ClientSession, aiohttp.ClientSession]:
        if self._session is None or self._fresh is None:
            # No trust_env: the proxy (configured, else HTTPS_PROXY/NO_PROXY) is passed per request.
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=self._cfg.max_concurrent_requests)
            )
            self._fresh = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl, force_close=True)
            )
        return self._session, self._fresh

    def auth_retry_in(self) -> float:
        """Seconds left of the credential's cool-down after a rejected token request."""
        return self.credential.retry_in()

    async def aclose(self) -> None:
        """Close both sessions."""
        for session in (self._session, self._fresh):
            if session is not None:
                await session.close()
        self._session = self._fresh = None

    async def get_json(self, url: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        """GET ``url`` and return the JSON object, retrying what is retriable (see module docstring).

        Raises ``ThrottledError`` (429 persisted), ``TransientSourceError`` (attempts exhausted),
        ``AuthError`` (token), or ``GraphStatusError`` (other 4xx). Cancellation abandons the request.
        """
        attempt = 0
        throttled = 0
        stale: str | None = None
        refreshed = False
        fresh_connection = False
        for _ in range(self._cfg.max_attempts + MAX_THROTTLED + 2):
            try:
                token = await self.credential.token(stale=stale)
                doc = await self._once(url, params, token, fresh_connection)
            except _Unauthorized:
                if refreshed:
                    raise SourceError(
                        "Graph rejected a freshly issued token (401); check the app's consent"
                    ) from None
                refreshed = True
                stale = token
                continue
            except _Throttled as exc:
                throttled += 1
                if throttled >= MAX_THROTTLED:
                    raise ThrottledError(str(exc), exc.retry_after) from None
                continue  # the budget now holds every request of this tenant until Retry-After
            except TransientSourceError as exc:
                attempt += 1
                if attempt >= self._cfg.max_attempts:
                    raise
                delay = backoff(
                    attempt - 1, self._cfg.backoff_base_secs, self._cfg.backoff_max_secs, self._rng
                )
                if isinstance(exc, _ServerError):
                    delay = max(delay, exc.retry_after)
                log.warning(
                    "Graph request failed; retrying.",
                    extra={
                        "tenant": self._tenant,
                        "error": str(exc),
                        "attempt": attempt,
                        "retry_in_secs": round(delay, 3),
                    },
                )
                self._m.graph_retries.labels(self._tenant).inc()
                fresh_connection = True
                await self._clock.sleep(delay)
                continue
            return doc
        raise TransientSourceError("Graph request retries exhausted")  # pragma: no cover

    async def send(
        self,
        method: str,
        url: str,
        body: Any = None,
        *,
        kind: Kind = "write",
        stale_token: str | None = None,
        fresh_connection: bool = False,
        wait_limit: float | None = None,
    ) -> GraphReply:
        """One request with this tenant's credential, proxy, TLS settings and budget (``kind``'s share).

        Unlike ``get_json`` nothing is retried and any status is returned: the caller decides,
        because a write that may have been applied must not simply be sent again. As for polls, a
        429 (and a 5xx's ``Retry-After``) holds the whole budget. Writes do not take a
        ``max_concurrent_requests`` slot (their caller sends one at a time per tenant). With
        ``stale_token`` (a token Graph answered 401 to) a fresh token is used. Raises ``AuthError``
        (credential), ``TransientSourceError`` (connection error or timeout: the request may or may
        not have reached Graph), ``BudgetTimeout`` (the budget gave no grant within ``wait_limit``
        seconds: nothing was sent).
        """
        session, fresh = self._sessions()
        token = await self.credential.token(stale=stale_token)
        client_request_id = str(uuid.uuid4())
        headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/json",
            "Prefer": "include-unknown-enum-members",
            "client-request-id": client_request_id,
        }
        try:
            async with asyncio.timeout(wait_limit):
                waited = await self.budget.acquire(kind)
        except TimeoutError:
            raise BudgetTimeout(
                f"no request allowed by the tenant's budget within {wait_limit:.1f}s"
            ) from None
        if waited:
            self._m.retry_after_seconds.labels(self._tenant).inc(waited)
        try:
            async with (fresh if fresh_connection else session).request(
                method,
                url,
                json=body,
                headers=headers,
                timeout=self._timeout,
                proxy=self._proxy or env_proxy(url),
                allow_redirects=False,
            ) as resp:
                reply = GraphReply(
                    resp.status,
                    await resp.read(),
                    resp.headers.get("request-id", "-"),
                    client_request_id,
                    parse_retry_after(resp.headers.get("Retry-After"), self._clock),
                    token,
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._m.graph_requests.labels(self._tenant, "error").inc()
            raise TransientSourceError(
                f"{method} {_path(url)} failed: {type(exc).__name__}, client-request-id {client_request_id}"
            ) from None
        self._m.graph_requests.labels(self._tenant, f"{reply.status // 100}xx").inc()
        if reply.status == 429:
            self._m.graph_throttled.labels(self._tenant).inc()
            self.budget.block_for(
                DEFAULT_RETRY_AFTER_SECS if reply.retry_after is None else reply.retry_after
            )
        elif reply.status >= 500 and reply.retry_after:
            self.budget.block_for(reply.retry_after)
        return reply

    async def _once(
        self, url: str, params: dict[str, str] | None, token: str, fresh_connection: bool
    ) -> dict[str, Any]:
        session, fresh = self._sessions()
        client_request_id = str(uuid.uuid4())
        headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/json",
            "Prefer": "include-unknown-enum-members",
            "client-request-id": client_request_id,
        }
        async with self._gate:
            waited = await self.budget.acquire()
            if waited:
                self._m.retry_after_seconds.labels(self._tenant).inc(waited)
            use = fresh if fresh_connection else session
            try:
                async with use.get(
                    url,
                    params=params,
                    headers=headers,
                    timeout=self._timeout,
                    proxy=self._proxy or env_proxy(url),
                ) as resp:
                    body = await resp.read()
                    status = resp.status
                    request_id = resp.headers.get("request-id", "-")
                    retry_after = resp.headers.get("Retry-After")
                    warning = resp.headers.get("Warning", "")
            except (aiohttp.ClientError, TimeoutError) as exc:
                self._m.graph_requests.labels(self._tenant, "error").inc()
                raise TransientSourceError(
                    f"GET {_path(url)} failed: {type(exc).__name__}, client-request-id {client_request_id}"
                ) from None
        self._m.graph_requests.labels(self._tenant, f"{status // 100}xx").inc()
        ids = f"request-id {request_id}, client-request-id {client_request_id}"
        if status == 401:
            raise _Unauthorized
        if status == 429:
            self._m.graph_throttled.labels(self._tenant).inc()
            asked = parse_retry_after(retry_after, self._clock)
            delay = DEFAULT_RETRY_AFTER_SECS if asked is None else asked
            self.budget.block_for(delay)
            log.warning(
                "Graph throttled the tenant (429).",
                extra={"tenant": self._tenant, "retry_after_secs": delay, "request_id": request_id},
            )
            raise _Throttled(f"Graph throttled (429), {ids}", delay)
        if status >= 500:
            seconds = parse_retry_after(retry_after, self._clock) or 0.0
            if seconds:
                self.budget.block_for(seconds)
            raise _ServerError(f"Graph returned {status} ({_error_code(body)}), {ids}", seconds)
        if status == 206:
            # A federated partial answer (some provider failed): accepting it could commit a cursor past
            # alerts that were left out, so it is retried like a 5xx and fails the poll if it persists.
            raise _ServerError(
                f"Graph returned 206 Partial Content (Warning: {warning[:200] or '-'}), {ids}", 0.0
            )
        if status >= 400:
            code = _error_code(body)
            hint = (
                " (grant SecurityAlert.Read.All / SecurityIncident.Read.All and admin consent)"
                if status == 403
                else ""
            )
            raise GraphStatusError(
                f"Graph returned {status} for {_path(url)}: {code}{hint}, {ids}", status, code
            )
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            try:
                # Valid JSON orjson refuses: a lone surrogate escape ("\ud800"), which Graph (.NET) can
                # write for alert text. Refusing it would stall the stream on that page forever.
                doc = json.loads(body)
            except ValueError:
                raise TransientSourceError(
                    f"Graph returned malformed JSON ({len(body)} bytes), {ids}"
                ) from None
        if not isinstance(doc, dict):
            raise TransientSourceError(f"Graph returned a non-object body, {ids}")
        return doc


class BudgetTimeout(TransientSourceError):
    """``send`` waited ``wait_limit`` for the budget (Retry-After, the 60 s window): nothing was sent."""


@dataclass(frozen=True, slots=True)
class GraphReply:
    """One answer from Graph, whatever its status (``GraphClient.send``)."""

    status: int
    body: bytes
    request_id: str
    client_request_id: str
    #: Seconds a ``Retry-After`` header asked for (``None`` when absent or unusable).
    retry_after: float | None
    #: The bearer token sent (pass it back as ``stale_token`` after a 401).
    token: str


class _Unauthorized(Exception):
    pass


class _ServerError(TransientSourceError):
    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _Throttled(Exception):
    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _path(url: str) -> str:
    return url.split("?", 1)[0]


def _error_code(body: bytes) -> str:
    try:
        doc = orjson.loads(body)
        code = doc["error"]["code"]
        return str(code)[:100]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return "no error code"
