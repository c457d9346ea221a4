"""What the Graph sources of one process share, so that a thousand tenants cost little more than one.

* **TLS contexts**, one per CA bundle (the system store is parsed once, not once per source);
* **HTTP sessions** (aiohttp connection pools), one pair per (Graph root, proxy, CA bundle): every
  tenant talks to the same Graph host, so a handful of keep-alive connections serve all of them
  instead of one or two idle TLS connections per tenant. Each source still bounds its own concurrency
  (``max_concurrent_requests``) and spends its own budget; the pools have no total limit, so one
  tenant's slow requests cannot hold another's back;
* **request budgets**, one per (cloud, tenant, app): Graph's 150 requests per minute is per app per
  tenant, so two sources of the same tenant and app spend one budget (and one token cache);
* **credentials** (MSAL application and token cache) per (cloud, tenant, app), and MSAL's
  ``requests`` session per (CA bundle, proxy, login host): the token requests of each credential
  still go through its own tenant's budget (``agent.entra.gate``, chosen per call).

The agent builds one ``GraphShared`` and closes it after its sources; a source built without one
(commands, tests) gets a private one.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING

import aiohttp

from agent.clock import Clock
from agent.entra import ClientCredential
from agent.metrics import AgentMetrics
from agent.sources.config import GraphSecuritySourceConfig
from agent.sources.graph.budget import POLL, RateBudget

if TYPE_CHECKING:
    import requests

SessionKey = tuple[str, str | None, str | None]


class GraphShared:
    """TLS contexts, HTTP sessions, budgets and credentials shared by the Graph sources of one process."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._ssl: dict[str | None, ssl.SSLContext] = {}
        self._sessions: dict[SessionKey, tuple[aiohttp.ClientSession, aiohttp.ClientSession]] = {}
        self._budgets: dict[tuple[str, str, str], RateBudget] = {}
        self._credentials: dict[tuple[str, str, str], ClientCredential] = {}
        self._msal_sessions: dict[tuple[str | None, str | None, str], requests.Session] = {}
        #: The budgets whose tokens a metrics refresher already exports.
        self._exported: set[tuple[str, str, str]] = set()

    def ssl_context(self, ca_bundle: str | None) -> ssl.SSLContext:
        """The TLS client context trusting ``ca_bundle`` (or the system store), built once."""
        ctx = self._ssl.get(ca_bundle)
        if ctx is None:
            ctx = ssl.create_default_context(cafile=ca_bundle) if ca_bundle else ssl.create_default_context()
            self._ssl[ca_bundle] = ctx
        return ctx

    def sessions(
        self, graph_root: str, proxy: str | None, ca_bundle: str | None
    ) -> tuple[aiohttp.ClientSession, aiohttp.ClientSession]:
        """(keep-alive session, new-connection-per-request session) for this Graph root, proxy and CA.

        Created on first use (inside the event loop). No ``trust_env`` (the proxy is passed per
        request) and no ``auto_decompress`` (bodies are inflated within ``max_response_bytes``).
        """
        key = (graph_root, proxy, ca_bundle)
        pair = self._sessions.get(key)
        if pair is None or pair[0].closed:
            context = self.ssl_context(ca_bundle)
            pair = (
                aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(ssl=context, limit=0, limit_per_host=0),
                    auto_decompress=False,
                ),
                aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(ssl=context, force_close=True, limit=0),
                    auto_decompress=False,
                ),
            )
            self._sessions[key] = pair
        return pair

    def budget(self, cfg: GraphSecuritySourceConfig) -> RateBudget:
        """The request budget of ``cfg``'s (cloud, tenant, app); the first source's rate sets it."""
        key = cfg.app_key()
        budget = self._budgets.get(key)
        if budget is None:
            budget = self._budgets[key] = RateBudget(cfg.requests_per_minute, self._clock)
        return budget

    def export_tokens(self, cfg: GraphSecuritySourceConfig, metrics: AgentMetrics) -> None:
        """Export the tokens of ``cfg``'s budget as ``graph_rate_budget_tokens{tenant}`` on every
        refresh: one refresher per budget, however many sources (or runs of one) spend it."""
        key = cfg.app_key()
        if key in self._exported:
            return
        self._exported.add(key)
        budget = self.budget(cfg)
        tokens = metrics.rate_budget_tokens.labels(cfg.tenant_id)
        metrics.add_refresher(lambda: tokens.set(budget.available()))

    def credential(
        self, cfg: GraphSecuritySourceConfig, build: Callable[..., ClientCredential]
    ) -> ClientCredential:
        """The one credential of ``cfg``'s (cloud, tenant, app), built by ``build(cfg, clock, gate=…,
        http_session=…)`` on first use; its token requests spend that app's budget."""
        key = cfg.app_key()
        cred = self._credentials.get(key)
        if cred is None:
            budget = self.budget(cfg)
            cred = build(
                cfg,
                self._clock,
                gate=functools.partial(budget.slot, POLL),
                http_session=functools.partial(self._msal_session, cfg),
            )
            self._credentials[key] = cred
        return cred

    def _msal_session(
        self, cfg: GraphSecuritySourceConfig, make: Callable[[], requests.Session]
    ) -> requests.Session:
        """MSAL's ``requests`` session for ``cfg``'s CA bundle, proxy and login host (``make`` builds one)."""
        proxy = cfg.proxy_url.get_secret_value() if cfg.proxy_url else None
        key = (str(cfg.ca_bundle) if cfg.ca_bundle else None, proxy, cfg.authority_url or cfg.cloud)
        session = self._msal_sessions.get(key)
        if session is None:
            session = self._msal_sessions[key] = make()
        return session

    @property
    def counts(self) -> dict[str, int]:
        """How many of each shared object exist (for the startup log line and the benchmark)."""
        return {
            "tls_contexts": len(self._ssl),
            "http_pools": len(self._sessions),
            "budgets": len(self._budgets),
            "credentials": len(self._credentials),
            "token_sessions": len(self._msal_sessions),
        }

    async def aclose(self) -> None:
        """Close every HTTP session (idempotent)."""
        sessions, self._sessions = self._sessions, {}
        for pair in sessions.values():
            for session in pair:
                await session.close()
        msal_sessions, self._msal_sessions = self._msal_sessions, {}
        for s in msal_sessions.values():
            s.close()
