"""WritebackService wiring: budget shares, and requests queued for sources that are gone."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from agent.clock import SystemClock
from agent.metrics import AgentMetrics
from agent.sources.graph.share import BudgetShare
from agent.sources.graph.shared import GraphShared
from agent.sources.graph.source import GraphSecuritySource
from agent.writeback.config import WritebackConfig
from agent.writeback.journal import Journal
from agent.writeback.queue import RequestQueue
from agent.writeback.service import WritebackService, journal_path
from agent.writeback.updates import Update
from agent.writeback.versions import OwnVersions
from tests.support.inprocess import graph_source as source
from tests.writeback.helpers import writeback_table


def _spawn(coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
    return asyncio.create_task(coro, name=name)


def _service(
    tmp_path: Path,
    sources: dict[str, GraphSecuritySource],
    registry: CollectorRegistry,
    adopt: Callable[[str], GraphSecuritySource | None] | None = None,
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
        adopt=adopt,
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


class TestStrandedRequests:
    async def test_requests_for_a_source_no_longer_configured_fail_at_start(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Queued for "gone", which the configuration no longer has (nothing adopts it): finished as
        failed with unknownSource at start, audited and counted, no longer taking a queue slot."""
        queue = RequestQueue(Journal(journal_path(tmp_path, "agent")), SystemClock(), 10, 3600)
        queue.load()
        req = queue.submit("gone", "alert", "da1", Update({"status": "resolved"}), "splunk")
        queue.journal.close()
        registry = CollectorRegistry()
        service = _service(tmp_path, {}, registry, adopt=lambda name: None)
        caplog.set_level(logging.INFO, logger="agent.writeback.audit")
        try:
            await service.start(_spawn, asyncio.Event())
            after = service.queue.get(req.id)
            assert after is not None and after.state == "failed" and after.error is not None
            assert after.error["code"] == "unknownSource" and "'gone'" in after.error["message"]
            assert service.queue.unfinished() == []
            labels = {"source": "gone", "result": "failed"}
            assert registry.get_sample_value("siem_agent_writeback_requests_total", labels) == 1.0
            audited = [r for r in caplog.records if r.name == "agent.writeback.audit"]
            assert [(r.__dict__["request"], r.__dict__["result"]) for r in audited] == [(req.id, "failed")]
        finally:
            await service.stop()
        again = RequestQueue(Journal(journal_path(tmp_path, "agent")), SystemClock(), 10, 3600)
        again.load()
        reloaded = again.get(req.id)
        assert reloaded is not None and reloaded.state == "failed", "the failure is journaled"
