"""Fixtures and helpers for the sink suites: fakes, receivers, alerts, and a runner harness."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry
from pydantic import TypeAdapter

from agent.codecs import build_serializer
from agent.metrics import AgentMetrics
from agent.model import Alert, Batch, Commit, Event
from agent.pipeline.acks import AckTracker
from agent.pipeline.dead_letter import DeadLetterFile
from agent.pipeline.queue import BoundedQueue
from agent.pipeline.runner import SinkRunner
from agent.sinks import SINKS, Sink, SinkContext
from agent.sinks.config import SinkConfig
from tests.fakes.hec import fake_hec
from tests.fakes.http import ndjson_receiver
from tests.fakes.logs_ingestion import fake_logs
from tests.fakes.osmem import osmem
from tests.fakes.proxy import proxy
from tests.fakes.syslog import tcp_receiver, udp_receiver
from tests.receivers.fixtures import rsyslog, syslog_ng

__all__ = [
    "fake_hec",
    "fake_logs",
    "ndjson_receiver",
    "osmem",
    "proxy",
    "rsyslog",
    "syslog_ng",
    "tcp_receiver",
    "udp_receiver",
]

_ADAPTER: TypeAdapter[Any] = TypeAdapter(SinkConfig)


def alert(i: int, updated: str = "2026-03-01T10:00:00.1234567Z", **extra: Any) -> dict[str, Any]:
    """A small alerts_v2-shaped object."""
    body: dict[str, Any] = {
        "id": f"da6380a1-{i:06d}",
        "tenantId": "00000000-0000-4000-8000-00000000feed",
        "title": f"Suspicious sign-in {i}",
        "severity": "high",
        "status": "new",
        "createdDateTime": "2026-03-01T09:59:00.0000000Z",
        "lastUpdateDateTime": updated,
    }
    body.update(extra)
    return body


def events(n: int, start: int = 0, **extra: Any) -> list[Event]:
    """``n`` events with the alert as compact JSON payload."""
    return [Event(a, orjson.dumps(a)) for a in (alert(i, **extra) for i in range(start, start + n))]


def ids_of(payloads: Sequence[bytes]) -> list[str]:
    return [orjson.loads(p)["id"] for p in payloads]


@pytest.fixture
def metrics() -> AgentMetrics:
    return AgentMetrics(CollectorRegistry())


@pytest.fixture
def ctx(metrics: AgentMetrics) -> SinkContext:
    return SinkContext("test", metrics)


def config(table: dict[str, Any]) -> Any:
    """Validate one sink table into its config model."""
    table = {"name": "test", **table}
    return _ADAPTER.validate_python(table)


def build(table: dict[str, Any], ctx: SinkContext) -> Sink:
    cfg = config(table)
    return SINKS[cfg.type](cfg, ctx)


class RunnerHarness:
    """One sink behind the real ``SinkRunner``, queue, ack tracker and dead-letter file."""

    def __init__(self, sink: Sink, table: dict[str, Any], metrics: AgentMetrics, tmp_path: Path) -> None:
        cfg = config(table)
        self.sink = sink
        self.commits: list[Commit] = []
        self.acks = AckTracker(lambda _stream, commit: self.commits.append(commit))
        self.queue = BoundedQueue(cfg.name, 100_000, "block", metrics)
        self.dead = DeadLetterFile(tmp_path / "dead.jsonl", lambda: "2026-03-01T00:00:00Z")

        async def short_backoff(_secs: float) -> None:
            await asyncio.sleep(0.01)  # the runner's backoff, shortened for tests

        self.runner = SinkRunner(
            sink,
            build_serializer(cfg.codec),
            self.queue,
            self.acks,
            self.dead,
            cfg.batch,
            cfg.retry,
            metrics,
            sleep=short_backoff,
            rng=random.Random(1),
        )

    async def feed(self, alerts: Sequence[Alert], per_batch: int) -> None:
        for i in range(0, len(alerts), per_batch):
            batch = Batch("s", list(alerts[i : i + per_batch]), Commit(cursor=str(i)))
            self.acks.register(batch, 1)
            assert await self.queue.put(batch)
        await self.queue.close()
