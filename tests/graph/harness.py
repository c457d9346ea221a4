"""A small harness that runs GraphSecuritySource the way agent.app does, without sinks.

``emit`` registers each batch with an ``AckTracker`` whose commits go to a ``CheckpointStore``; a
batch is acknowledged at once (``auto_ack``) or when the test says so; ``advance`` (the cursor-only
commit) is registered with no acknowledgement to wait for. Every acknowledged alert
version is recorded, and every commit is checked: the cursor may never pass an alert version the
simulator shows that was not acknowledged yet (unless late ingestion is part of the test).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from agent.checkpoint import CheckpointStore
from agent.clock import Clock, SystemClock, now_str
from agent.metrics import AgentMetrics
from agent.model import Alert, Batch, Commit
from agent.pipeline.acks import AckTracker
from agent.simulator.server import GraphSimulator
from agent.sources.base import SourceContext, Stopping
from agent.sources.config import GraphSecuritySourceConfig
from agent.sources.graph.source import GraphSecuritySource
from agent.timestamps import minus_seconds, sort_key
from tests.support.wait import until

FAST: dict[str, Any] = {
    "poll_interval_secs": 0.1,
    "overlap_secs": 600,
    "initial_lookback_secs": 3600,
    "page_size": 10,
    "request_timeout_secs": 2.0,
    "backoff_base_secs": 0.02,
    "backoff_max_secs": 0.2,
    "error_backoff_max_secs": 0.3,
    "requests_per_minute": 60_000,
}


def source_table(sim: GraphSimulator, ca: Path, **overrides: Any) -> dict[str, Any]:
    """A graph_security source table for ``sim`` with fast test timings."""
    table: dict[str, Any] = {
        "type": "graph_security",
        "name": "sim",
        "tenant_id": sim.tenant_id,
        "client_id": sim.client_id,
        "client_secret": sim.client_secret,
        "authority_url": sim.base_url,
        "graph_url": sim.base_url,
        "ca_bundle": str(ca),
        **FAST,
    }
    table.update(overrides)
    return {k: v for k, v in table.items() if v is not None}


@dataclass
class Harness:
    """Runs one or more sources against simulators and records what was acknowledged."""

    state_dir: Path
    clock: Clock = field(default_factory=SystemClock)
    auto_ack: bool = True
    #: Commits are checked against these simulators (stream prefix -> simulator).
    strict: dict[str, GraphSimulator] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.registry = CollectorRegistry()
        self.metrics = AgentMetrics(self.registry)
        self.store = CheckpointStore(self.state_dir, "test", lambda: now_str(self.clock))
        self.store.load()
        self.acks = AckTracker(self._on_commit)
        self.stop = asyncio.Event()
        self.delivered: list[tuple[str, str, str]] = []  # (stream, id, lastUpdateDateTime) acknowledged
        self.items: list[dict[str, Any]] = []
        self.held: list[Batch] = []
        self.commits: list[tuple[str, Commit]] = []
        self.violations: list[str] = []
        #: Items the source dead-lettered: (stream, item, reason).
        self.rejected: list[tuple[str, dict[str, Any], str]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.sources: list[GraphSecuritySource] = []

    # -- pipeline stand-in ---------------------------------------------------------------------

    async def _emit(self, batch: Batch) -> None:
        if self.stop.is_set():
            raise Stopping
        self.acks.register(batch, 1)
        if self.auto_ack:
            self._ack(batch)
        else:
            self.held.append(batch)

    async def _advance(self, stream: str, commit: Commit) -> None:
        if self.stop.is_set():
            raise Stopping
        self.acks.advance(stream, commit)

    async def _reject(self, stream: str, item: Alert, reason: str) -> None:
        self.rejected.append((stream, dict(item), reason))

    def _ack(self, batch: Batch) -> None:
        for alert in batch.alerts:
            self.delivered.append((batch.stream, str(alert.get("id")), str(alert.get("lastUpdateDateTime"))))
            self.items.append(dict(alert))
        self.acks.ack(batch)

    def ack_held(self) -> None:
        """Acknowledge every held batch, in order."""
        held, self.held = self.held, []
        for batch in held:
            self._ack(batch)

    def _on_commit(self, stream: str, commit: Commit) -> None:
        self.store.apply(stream, commit)
        self.commits.append((stream, commit))
        if commit.cursor is None:
            return
        for prefix, sim in self.strict.items():
            if not stream.startswith(prefix + "/alerts_v2/"):
                continue
            acked = {(i, v) for s, i, v in self.delivered if s == stream}
            source = stream.rsplit("/", 1)[1]
            for alert in sim.alerts.values():
                if alert["id"] in sim.hidden or (source != "all" and alert["serviceSource"] != source):
                    continue
                lud = alert["lastUpdateDateTime"]
                if sort_key(lud) < sort_key(commit.cursor) and (alert["id"], lud) not in acked:
                    self.violations.append(
                        f"{stream}: cursor {commit.cursor} passed unacknowledged {alert['id']}"
                    )

    # -- running -------------------------------------------------------------------------------

    def start(self, table: dict[str, Any]) -> GraphSecuritySource:
        """Build and start a source from a config table (state: what the store holds now)."""
        cfg = GraphSecuritySourceConfig(**table)
        source = GraphSecuritySource(cfg, self.clock, self.metrics)
        ctx = SourceContext(
            self._emit, self._advance, dict(self.store.streams), self.stop, reject=self._reject
        )
        self.sources.append(source)
        self._tasks.append(asyncio.create_task(source.run(ctx), name=f"source:{cfg.name}"))
        return source

    async def close(self, timeout: float = 10.0) -> None:
        """Stop every source and wait (bounded) for them to return."""
        self.stop.set()
        if self._tasks:
            done, pending = await asyncio.wait(self._tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            assert not pending, f"sources did not stop within {timeout}s: {pending}"
            for task in done:
                if task.exception() is not None:
                    raise AssertionError(f"source raised {task.exception()!r}")
        for source in self.sources:
            await source.aclose()
        # Let TLS transports finish their close handshakes before the loop goes away.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.sleep(0.05), 1)

    # -- assertions helpers ---------------------------------------------------------------------

    def versions(self, stream_prefix: str = "") -> Counter[tuple[str, str]]:
        """How often each (id, lastUpdateDateTime) was acknowledged."""
        return Counter((i, v) for s, i, v in self.delivered if s.startswith(stream_prefix))

    async def wait_delivered(
        self, expected: set[tuple[str, str]], timeout: float = 10.0, prefix: str = ""
    ) -> None:
        """Wait until every expected version was acknowledged."""
        await until(
            lambda: expected <= set(self.versions(prefix)), timeout, f"{len(expected)} versions delivered"
        )

    def metric(self, name: str, **labels: str) -> float:
        """A sample value (0 when absent)."""
        return self.registry.get_sample_value(name, labels) or 0.0

    def cursor(self, stream: str) -> str | None:
        """The acknowledged cursor of ``stream``."""
        state = self.store.streams.get(stream)
        return state.cursor if state else None


def expected_versions(sim: GraphSimulator, service_source: str | None = None) -> set[tuple[str, str]]:
    """The current (id, lastUpdateDateTime) of every visible alert in ``sim``."""
    return {
        (a["id"], a["lastUpdateDateTime"])
        for a in sim.alerts.values()
        if a["id"] not in sim.hidden and (service_source is None or a["serviceSource"] == service_source)
    }


def graph_times(sim: GraphSimulator, pred: Callable[[Any], bool] = lambda r: True) -> list[float]:
    """Arrival times of Graph requests matching ``pred``."""
    return [r.at for r in sim.graph_requests() if pred(r)]


def overlap_floor(cursor: str, overlap_secs: float) -> str:
    """What the next poll asks for."""
    return minus_seconds(cursor, overlap_secs)


def busiest_minute(times: Iterable[float]) -> int:
    """The most of ``times`` (seconds, any order) that any 60-second window [t, t + 60) holds: what a
    per-minute budget is checked against."""
    ordered = sorted(times)
    return max((bisect.bisect_left(ordered, t + 60.0) - i for i, t in enumerate(ordered)), default=0)
