"""Graph HTTP client for one (tenant, app): bearer auth, the shared rate budget, retries.

Every request carries ``Prefer: include-unknown-enum-members`` (so new enum members are not masked
as ``unknownFutureValue``) and a fresh ``client-request-id``; Graph's ``request-id`` is logged with
every error. Bodies are parsed with orjson into plain dicts (nothing renamed or dropped).

Every attempt holds a slot of the tenant's ``RateBudget`` from before it is sent until its answer is
in (``budget.py``: the window is exact as Graph counts it). The bearer token only ever goes to the
configured Graph root: a URL of another scheme, host or port is refused before anything is sent
(``UpstreamProtocolError``), and redirects are never followed (a 3xx fails the request, naming the
``Location`` origin and path). Bodies are untrusted input (``body.py``): bounded in size compressed
and decompressed, and parsed so that no nesting depth can crash the poll.

Response handling (Graph docs: ``concepts/throttling.md``, ``best-practices-concept.md``, ``errors.md``):

* 429 — block the tenant's whole budget for exactly ``Retry-After`` (seconds, fractional, or an
  HTTP-date; 10 s if absent), then retry the same request (bounded);
* 5xx, timeouts, connection errors, malformed bodies — exponential backoff with full jitter, bounded
  attempts, and the retry goes over a *new* connection (a ``force_close`` session), as Graph asks
  after a 503; a ``Retry-After`` on a 5xx is honoured as a minimum;
* 401 — a fresh token once (the expired one is dropped), then the request again;
* other 4xx — ``GraphStatusError`` with Graph's error code: the caller decides (no retry here);
* 3xx — ``UpstreamProtocolError`` (a redirect is never followed: it would carry the token elsewhere).
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from agent.clock import Clock
from agent.entra import ClientCredential
from agent.errors import SourceError, ThrottledError, TransientSourceError, UpstreamProtocolError
from agent.metrics import AgentMetrics
from agent.proxies import env_proxy
from agent.retry import backoff, parse_retry_after
from agent.sources.config import GraphSecuritySourceConfig
from agent.sources.graph.body import ACCEPT_ENCODING, graph_error, inflate, parse_object, read_limited
from agent.sources.graph.budget import POLL, RateBudget
from agent.sources.graph.endpoints import endpoints_for, graph_credential
from agent.sources.graph.pages import Origin, describe, same_origin
from agent.sources.graph.share import Kind
from agent.sources.graph.shared import GraphShared

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


class GraphClient:
    """Issues GETs against one tenant's Graph endpoint, over the process's shared HTTP sessions."""

    @classmethod
    def connect(
        cls,
        cfg: GraphSecuritySourceConfig,
        clock: Clock,
        metrics: AgentMetrics,
        shared: GraphShared | None = None,
    ) -> GraphClient:
        """The client of ``cfg``'s tenant and app with its credential (MSAL token cache) and request
        budget, both shared with every source of the same (cloud, tenant, app) through ``shared``
        (``agent.sources.graph.shared``; ``None``: a private one, closed by ``aclose``). Sessions open
        on the first request. The credential's token requests spend the same budget as the Graph
        requests."""
        own = shared is None
        pool = GraphShared(clock) if shared is None else shared
        credential = pool.credential(cfg, graph_credential)
        client = cls(cfg, credential, pool.budget(cfg), metrics, clock, pool)
        client._owns_pool = own
        return client

    def __init__(
        self,
        cfg: GraphSecuritySourceConfig,
        credential: ClientCredential,
        budget: RateBudget,
        metrics: AgentMetrics,
        clock: Clock,
        shared: GraphShared | None = None,
    ) -> None:
        self._cfg = cfg
        #: The app's token source (``token()`` proves the credential on its own).
        self.credential = credential
        #: The (tenant, app) request budget every request of this client spends.
        self.budget = budget
        self._m = metrics
        self._clock = clock
        self._tenant = cfg.tenant_id
        #: Where the token may be sent: the configured Graph root's scheme, host and port.
        self.root = Origin.of(endpoints_for(cfg).graph_root)
        self._max_bytes = cfg.max_response_bytes
        self._timeout = aiohttp.ClientTimeout(total=cfg.request_timeout_secs)
        self._proxy = cfg.proxy_url.get_secret_value() if cfg.proxy_url else None
        self._ca_bundle = str(cfg.ca_bundle) if cfg.ca_bundle else None
        self._gate = asyncio.Semaphore(cfg.max_concurrent_requests)
        self._rng = random.Random()
        self._shared = shared if shared is not None else GraphShared(clock)
        self._owns_pool = shared is None

    def _sessions(self) -> tuple[aiohttp.ClientSession, aiohttp.ClientSession]:
        # The proxy (configured, else HTTPS_PROXY/NO_PROXY) is passed per request; body.py inflates.
        return self._shared.sessions(str(self.root), self._proxy, self._ca_bundle)

    def auth_retry_in(self) -> float:
        """Seconds left of the credential's cool-down after a rejected token request."""
        return self.credential.retry_in()

    async def aclose(self) -> None:
        """Close the sessions if they are this client's own (shared ones close with their owner)."""
        if self._owns_pool:
            await self._shared.aclose()

    async def get_json(self, url: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        """GET ``url`` and return the JSON object, retrying what is retriable (see module docstring).

        Raises ``ThrottledError`` (429 persisted), ``TransientSourceError`` (attempts exhausted),
        ``AuthError`` (token), ``GraphStatusError`` (other 4xx) or ``UpstreamProtocolError`` (``url``
        outside the Graph root, or a redirect). Cancellation abandons the request.
        """
        if not same_origin(url, self.root):
            raise UpstreamProtocolError(
                f"refusing to send the Graph token to {describe(url)} (Graph root {self.root})"
            )
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
        not have reached Graph; or an answer larger than ``max_response_bytes``), ``BudgetTimeout``
        (the budget gave no grant within ``wait_limit`` seconds: nothing was sent),
        ``UpstreamProtocolError`` (``url`` is not on the Graph root: nothing was sent). The budget slot
        is held until the answer is in, like every poll's.
        """
        if not same_origin(url, self.root):
            raise UpstreamProtocolError(
                f"refusing to send the Graph token to {describe(url)} (Graph root {self.root})"
            )
        session, fresh = self._sessions()
        token = await self.credential.token(stale=stale_token)
        client_request_id = str(uuid.uuid4())
        headers = _headers(token, client_request_id)
        slot = self.budget.slot(kind)  # held until the answer is in: the window is exact at Graph
        try:
            async with asyncio.timeout(wait_limit):
                waited = await slot.__aenter__()
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
                raw = await read_limited(resp, self._max_bytes)
                reply = GraphReply(
                    resp.status,
                    inflate(raw, resp.headers.get("Content-Encoding", ""), self._max_bytes),
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
        except TransientSourceError as exc:  # the answer's body was too large or badly encoded
            self._m.graph_requests.labels(self._tenant, "error").inc()
            raise TransientSourceError(
                f"{method} {_path(url)}: {exc}, client-request-id {client_request_id}"
            ) from None
        finally:
            await slot.__aexit__(None, None, None)
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
        headers = _headers(token, client_request_id)
        async with self._gate, self.budget.slot(POLL) as waited:
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
                    allow_redirects=False,
                ) as resp:
                    status = resp.status
                    request_id = resp.headers.get("request-id", "-")
                    retry_after = resp.headers.get("Retry-After")
                    warning = resp.headers.get("Warning", "")
                    location = resp.headers.get("Location", "")
                    encoding = resp.headers.get("Content-Encoding", "")
                    body = b"" if 300 <= status < 400 else await read_limited(resp, self._max_bytes)
            except (aiohttp.ClientError, TimeoutError) as exc:
                self._m.graph_requests.labels(self._tenant, "error").inc()
                raise TransientSourceError(
                    f"GET {_path(url)} failed: {type(exc).__name__}, client-request-id {client_request_id}"
                ) from None
            except TransientSourceError as exc:  # the body was too large
                self._m.graph_requests.labels(self._tenant, f"{status // 100}xx").inc()
                raise TransientSourceError(f"GET {_path(url)}: {exc}, request-id {request_id}") from None
        self._m.graph_requests.labels(self._tenant, f"{status // 100}xx").inc()
        ids = f"request-id {request_id}, client-request-id {client_request_id}"
        if 300 <= status < 400:
            where = describe(location) if location else "no Location"
            raise UpstreamProtocolError(f"Graph answered {status} (redirect to {where}): not followed, {ids}")
        body = inflate(body, encoding, self._max_bytes) if encoding else body
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
            return parse_object(body)
        except TransientSourceError as exc:
            raise TransientSourceError(f"Graph returned {exc}, {ids}") from None


class BudgetTimeout(TransientSourceError):
    """``send`` waited ``wait_limit`` for the budget (Retry-After, the 60 s window): nothing was sent."""


@dataclass(frozen=True, slots=True)
class GraphReply:
    """One answer from Graph, whatever its status (``GraphClient.send``)."""

    status: int
    body: bytes = field(repr=False)
    request_id: str
    client_request_id: str
    #: Seconds a ``Retry-After`` header asked for (``None`` when absent or unusable).
    retry_after: float | None
    #: The bearer token sent (pass it back as ``stale_token`` after a 401); never in the repr.
    token: str = field(repr=False)


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
    err = graph_error(body)
    return str(err["code"])[:100] if "code" in err else "no error code"


def _headers(token: str, client_request_id: str) -> dict[str, str]:
    """Every Graph request's headers: the bearer token, JSON, compression, unknown enum members as
    themselves (``Prefer``), and the id Microsoft support asks for."""
    return {
        "Authorization": f"Bearer {token}",
        "Accept": "application/json",
        "Accept-Encoding": ACCEPT_ENCODING,
        "Prefer": "include-unknown-enum-members",
        "client-request-id": client_request_id,
    }
