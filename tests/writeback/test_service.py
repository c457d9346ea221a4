"""WritebackService wiring: budget shares, and requests queued for sources that are gone."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from agent.clock import SystemClock
from agent.metrics import AgentMetrics
from agent.sources.graph.share import BudgetShare
from agent.sources.graph.shared import GraphShared
from agent.sources.graph.source import GraphSecuritySource
from agent.writeback.config import WritebackConfig
from agent.writeback.service import WritebackService
from agent.writeback.versions import OwnVersions
from tests.unit.test_shard import source
from tests.writeback.helpers import writeback_table


def _spawn(coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
    return asyncio.create_task(coro, name=name)


def _service(
    tmp_path: Path, sources: dict[str, GraphSecuritySource], registry: CollectorRegistry
) -> WritebackService:
    clock = SystemClock()
    return WritebackService(
        WritebackConfig(**writeback_table(budget_share=0.2)),
        tmp_path,
        "agent",
        sources,
        OwnVersions(tmp_path / "v.jsonl", clock, 3600),
        clock,
        registry,
    )


class TestBudgetShare:
    async def test_sources_of_one_app_get_one_share_from_the_budget_limit(self, tmp_path: Path) -> None:
        """Two sources of one tenant and app, different requests_per_minute: the one budget they share
        (the first source's rate) gets one share derived from its own limit, not the last source's rate."""
        shared = GraphShared(SystemClock())
        m = AgentMetrics(CollectorRegistry())
        a = GraphSecuritySource(source("a", requests_per_minute=60), SystemClock(), m, shared)
        b = GraphSecuritySource(source("b", requests_per_minute=150), SystemClock(), m, shared)
        service = _service(tmp_path, {"a": a, "b": b}, CollectorRegistry())
        try:
            await service.start(_spawn, asyncio.Event())
            budget = a.client().budget
            assert b.client().budget is budget and budget.limit == 60
            assert budget.share is not None
            assert budget.share.reserved == BudgetShare(60, 0.2).reserved == {"write": 12, "poll": 48}
        finally:
            await service.stop()
            for s in (a, b):
                await s.aclose()
            await shared.aclose()
