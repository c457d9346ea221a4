"""GraphSecuritySource: one tenant and app registration, polled as several concurrent streams.

Streams: ``<name>/alerts_v2/<serviceSource>`` for each configured serviceSource (or one
``<name>/alerts_v2/all``), plus ``<name>/incidents/all`` when ``incidents = true``. They share one
credential (MSAL token cache), one HTTP client and one request budget, because Graph's limit is per
app per tenant. Each stream has its own cursor and dedup keys in the checkpoint (see
``agent.sources.graph.poller``). A stream that fails backs off on its own; a source never raises for
upstream failures, so one tenant's trouble cannot stop another tenant's source.
"""

from __future__ import annotations

import asyncio
import logging

from agent.sources.base import SourceContext
from agent.sources.config import GraphSecuritySourceConfig
from agent.sources.graph.budget import RateBudget
from agent.sources.graph.client import GraphClient
from agent.sources.graph.endpoints import endpoints_for, graph_credential
from agent.sources.graph.poller import StreamPoller, StreamSpec

log = logging.getLogger(__name__)

ALERTS_PATH = "/v1.0/security/alerts_v2"
INCIDENTS_PATH = "/v1.0/security/incidents"


class GraphSecuritySource:
    """Polls one tenant's alerts_v2 (per serviceSource) and optionally its incidents."""

    def __init__(self, config: GraphSecuritySourceConfig) -> None:
        self.name = config.name
        self.config = config
        self.endpoints = endpoints_for(config)
        self.graph_root = self.endpoints.graph_root
        self._client: GraphClient | None = None

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

    async def run(self, ctx: SourceContext) -> None:
        """Poll every stream concurrently until ``ctx.stop``; returns when all streams have returned."""
        cfg = self.config
        credential = graph_credential(cfg, ctx.clock)
        budget = RateBudget(cfg.requests_per_minute, ctx.clock)
        tokens = ctx.metrics.rate_budget_tokens.labels(cfg.tenant_id)
        ctx.metrics.add_refresher(lambda: tokens.set(budget.available()))
        self._client = client = GraphClient(cfg, credential, budget, ctx.metrics, ctx.clock)
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
        try:
            async with asyncio.TaskGroup() as tg:
                for spec in self.stream_specs():
                    tg.create_task(StreamPoller(spec, cfg, client, ctx).run(), name=f"poll:{spec.stream}")
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP sessions (idempotent)."""
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()
