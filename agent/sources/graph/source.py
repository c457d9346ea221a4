"""GraphSecuritySource: one tenant and app registration, polled as several concurrent streams.

Streams: ``<name>/alerts_v2/<serviceSource>`` for each configured serviceSource (or one
``<name>/alerts_v2/all``), plus ``<name>/incidents/all`` when ``incidents = true``. They share one
credential (MSAL token cache), one HTTP client and one request budget, because Graph's limit is per
app per tenant (``GraphClient.connect`` builds the three). Each stream has its own cursor and dedup
keys in the checkpoint (see ``agent.sources.graph.poller``). A stream that fails backs off on its own;
a source never raises for upstream failures, so one tenant's trouble cannot stop another tenant's
source.

Three ways to use a source: ``run`` polls until stopped; ``read_window`` reads one bounded time
window of every stream once (``backfill``); ``healthcheck`` acquires a token and reads one item
(``$top=1``) of every collection (``validate --check-connectivity``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from agent.clock import Clock
from agent.entra.claims import token_roles
from agent.errors import TransientSourceError
from agent.metrics import AgentMetrics
from agent.sources.base import SourceContext, Stopping
from agent.sources.config import GraphSecuritySourceConfig
from agent.sources.graph.client import GraphClient
from agent.sources.graph.endpoints import endpoints_for
from agent.sources.graph.poller import StreamPoller
from agent.sources.graph.reader import StreamSpec
from agent.sources.graph.shared import GraphShared

log = logging.getLogger(__name__)

ALERTS_PATH = "/v1.0/security/alerts_v2"
INCIDENTS_PATH = "/v1.0/security/incidents"
#: Attempts per request during a health check: enough to ride out one blip, short enough to answer.
HEALTHCHECK_ATTEMPTS = 2


class GraphSecuritySource:
    """Polls one tenant's alerts_v2 (per serviceSource) and optionally its incidents."""

    def __init__(
        self,
        config: GraphSecuritySourceConfig,
        clock: Clock,
        metrics: AgentMetrics,
        shared: GraphShared | None = None,
    ) -> None:
        self.name = config.name
        #: TLS contexts, HTTP sessions, budgets and credentials shared with the process's other
        #: sources (``None``: this source's own, closed with it).
        self.shared = shared
        #: Where in its first poll interval the source polls first (``0 <= f < 1``): the agent spreads
        #: its sources' first polls (``agent.shard.spread``); each stream then keeps that phase.
        self.first_poll_fraction = 0.0
        self.config = config
        self.endpoints = endpoints_for(config)
        self.graph_root = self.endpoints.graph_root
        self._clock = clock
        self._metrics = metrics
        self._client: GraphClient | None = None
        #: Whether this source (without a ``shared``) registered its budget-tokens refresher.
        self._tokens_exported = False
        #: The ``roles`` claim of the token ``healthcheck`` acquired (``None``: not a readable JWT).
        self.granted_roles: list[str] | None = None

    def stream_specs(self) -> list[StreamSpec]:
        """The streams this source polls, with their checkpoint keys."""
        cfg = self.config
        field = "createdDateTime" if cfg.forward_updates == "first" else "lastUpdateDateTime"
        specs = [
            StreamSpec(
                stream=f"{self.name}/alerts_v2/{s or 'all'}",
                url=self.graph_root + ALERTS_PATH,
                time_field=field,
                page_size=cfg.page_size,
                service_source=s,
            )
            for s in (cfg.service_sources or [""])
        ]
        if cfg.incidents:
            specs.append(
                StreamSpec(
                    stream=f"{self.name}/incidents/all",
                    url=self.graph_root + INCIDENTS_PATH,
                    time_field=field,
                    page_size=cfg.incidents_page_size,
                    expand="alerts" if cfg.incidents_expand_alerts else None,
                )
            )
        return specs

    def stream_ids(self) -> list[str]:
        """The stream ids this source emits (checkpoint keys)."""
        return [s.stream for s in self.stream_specs()]

    def client(self) -> GraphClient:
        """The tenant's one client (credential, request budget, sessions), built on first use.

        Polling and write-back share it, so both spend one budget and one token cache.
        """
        if self._client is None:
            self._client = GraphClient.connect(self.config, self._clock, self._metrics, self.shared)
        return self._client

    async def _each_stream(
        self,
        client: GraphClient,
        ctx: SourceContext,
        job: Callable[[StreamPoller], Coroutine[Any, Any, None]],
    ) -> None:
        """Run ``job`` for a poller of every stream concurrently; close the client afterwards."""
        try:
            async with asyncio.TaskGroup() as tg:
                for spec in self.stream_specs():
                    poller = StreamPoller(
                        spec,
                        self.config,
                        client,
                        ctx,
                        self._clock,
                        self._metrics,
                        first_delay=self.first_poll_fraction * self.config.poll_interval_secs,
                    )
                    tg.create_task(job(poller), name=f"poll:{spec.stream}")
        finally:
            await self.aclose()

    async def run(self, ctx: SourceContext) -> None:
        """Poll every stream concurrently until ``ctx.stop``; returns when all streams have returned."""
        cfg = self.config
        client = self.client()
        self._export_tokens()
        log.info(
            "Graph source started.",
            extra={
                "source": self.name,
                "tenant": cfg.tenant_id,
                "graph": self.graph_root,
                "streams": self.stream_ids(),
                "requests_per_minute": cfg.requests_per_minute,
            },
        )
        await self._each_stream(client, ctx, StreamPoller.run)

    def _export_tokens(self) -> None:
        """The budget's tokens as a gauge: one refresher per budget (shared) or per source (its own)."""
        if self.shared is not None:
            self.shared.export_tokens(self.config, self._metrics)
            return
        if self._tokens_exported:
            return
        self._tokens_exported = True
        tokens = self._metrics.rate_budget_tokens.labels(self.config.tenant_id)

        def refresh() -> None:
            if self._client is not None:  # the source's current client (a new one after aclose)
                tokens.set(self._client.budget.available())

        self._metrics.add_refresher(refresh)

    async def read_window(self, ctx: SourceContext, start: str, end: str) -> None:
        """Read ``[start, end)`` of every stream once (see ``Source.read_window``).

        Each stream reads the window newest page first, one bounded query per page (``reader.py``), so
        every alert is fetched once (alert versions seen twice, at a timestamp shared across a page cut,
        are emitted once), then advances its cursor to ``end``. ``siem_agent_graph_window_remaining``
        tracks what Graph counted as left to read.
        """

        async def one(poller: StreamPoller) -> None:
            log.info("Backfilling.", extra={"stream": poller.stream, "since": start, "until": end})
            try:
                await poller.read_window(start, end)
            except Stopping:
                return
            log.info("Window read.", extra={"stream": poller.stream})

        await self._each_stream(self.client(), ctx, one)

    async def healthcheck(self) -> str:
        """A token, then ``$top=1`` on each collection the source reads (two attempts per request).

        Returns e.g. ``token acquired; alerts_v2: 1 item(s)``. Raises ``AuthError`` (credential
        rejected), ``GraphStatusError`` (e.g. 403 without consent) or ``TransientSourceError``
        (unreachable, malformed answer, or no answer within its time bound).
        """
        cfg = self.config.model_copy(
            update={"max_attempts": min(self.config.max_attempts, HEALTHCHECK_ATTEMPTS)}
        )
        client = GraphClient.connect(cfg, self._clock, self._metrics)
        urls = list(dict.fromkeys(s.url for s in self.stream_specs()))
        read: list[str] = []
        try:
            async with asyncio.timeout(cfg.request_timeout_secs * (2 + HEALTHCHECK_ATTEMPTS * len(urls))):
                self.granted_roles = token_roles(await client.credential.token())
                for url in urls:
                    name = url.rsplit("/", 1)[-1]
                    items = (await client.get_json(url, {"$top": "1"})).get("value")
                    if not isinstance(items, list):
                        raise TransientSourceError(f"GET {name}: no 'value' list in the answer")
                    read.append(f"{name}: {len(items)} item(s)")
        except TimeoutError:
            raise TransientSourceError("timed out") from None
        finally:
            await client.aclose()
        return "token acquired; " + "; ".join(read)

    async def aclose(self) -> None:
        """Close the HTTP sessions (idempotent)."""
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()
