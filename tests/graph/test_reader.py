"""The window reader in memory: no loss, no repeats, the minimum of requests — while Graph's data moves.

A fake Graph answers with the simulator's own listing (``agent.simulator.odata.list_page``: newest
first, ``$top``, ``$skiptoken`` offsets, ``$count``, nextLinks), and between any two requests the data
changes the ways Graph's does: an alert is updated (stamped later than everything, so it leaves any
bounded window and moves to the top), a late alert is published with an older timestamp, a new one
arrives. Hypothesis draws the data (ties included) and the schedule; the real ``StreamPoller`` polls.

Checked after each poll's cursor commit: every alert version visible and unchanged since before the
poll started, and older than the cursor, was forwarded (the cursor never passes one). At the end
(after the changes stop and two more polls): every current version was forwarded, and none twice.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from agent.checkpoint import StreamState
from agent.errors import TransientSourceError, UpstreamProtocolError
from agent.metrics import AgentMetrics
from agent.model import Batch, Commit
from agent.simulator.odata import list_page
from agent.sources.base import SourceContext
from agent.sources.config import GraphSecuritySourceConfig
from agent.sources.graph.client import GraphClient
from agent.sources.graph.pages import Origin
from agent.sources.graph.poller import StreamPoller
from agent.sources.graph.reader import StreamSpec
from agent.timestamps import from_ticks, sort_key, to_ticks
from tests.support.clock import FixedClock

ROOT = "https://graph.test"
URL = ROOT + "/v1.0/security/alerts_v2"
BASE = to_ticks("2026-01-05T00:00:00Z")
SECOND = 10_000_000
OVERLAP_SECS = 600


@dataclass
class FakeGraph:
    """Alerts plus a schedule of changes applied after given requests (like the simulator's hooks)."""

    alerts: dict[str, dict[str, Any]] = field(default_factory=dict)
    hidden: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: request number -> changes to make right after answering it
    schedule: dict[int, list[tuple[str, int]]] = field(default_factory=dict)
    requests: int = 0
    step: int = 0  # logical time of the last change
    #: alert id -> step its current version became visible
    since: dict[str, int] = field(default_factory=dict)
    now_ticks: int = BASE + 9_301 * SECOND  # updates are stamped after every generated alert
    shuffle: bool = False
    seq: int = 0

    def add(self, ticks: int, hidden: bool = False) -> str:
        self.seq += 1
        alert_id = f"a{self.seq:04d}"
        ts = from_ticks(ticks)
        alert = {"id": alert_id, "createdDateTime": ts, "lastUpdateDateTime": ts, "n": self.seq}
        if hidden:
            self.hidden[alert_id] = alert
        else:
            self.alerts[alert_id] = alert
            self.since[alert_id] = self.step
        return alert_id

    def change(self, kind: str, pick: int) -> None:
        self.step += 1
        if kind == "update" and self.alerts:
            alert_id = sorted(self.alerts)[pick % len(self.alerts)]
            self.now_ticks += SECOND
            self.alerts[alert_id] = {
                **self.alerts[alert_id],
                "lastUpdateDateTime": from_ticks(self.now_ticks),
            }
            self.since[alert_id] = self.step
        elif kind == "publish" and self.hidden:
            alert_id = sorted(self.hidden)[pick % len(self.hidden)]
            self.alerts[alert_id] = self.hidden.pop(alert_id)
            self.since[alert_id] = self.step
        elif kind == "new":
            self.now_ticks += SECOND
            self.add(self.now_ticks)

    async def get_json(self, url: str, params: dict[str, str] | None) -> dict[str, Any]:
        if params is None:  # a nextLink
            parts = urlsplit(url)
            assert f"{parts.scheme}://{parts.netloc}{parts.path}" == URL
            params = dict(parse_qsl(parts.query))
        doc, _ = list_page(list(self.alerts.values()), params, URL, 100)
        if self.shuffle:
            doc["value"] = sorted(doc["value"], key=lambda a: a["n"] * 7919 % 101)
        self.requests += 1
        for kind, pick in self.schedule.get(self.requests, []):
            self.change(kind, pick)
        return doc


class FakeClient:
    """What StreamPoller uses of GraphClient."""

    def __init__(self, graph: FakeGraph) -> None:
        self.get_json = graph.get_json
        self.root = Origin.of(ROOT)

    def auth_retry_in(self) -> float:
        return 0.0


@dataclass
class Recorder:
    graph: FakeGraph
    emitted: Counter[tuple[str, str]] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    poll_started: int = 0

    async def emit(self, batch: Batch) -> None:
        for a in batch.alerts:
            self.emitted[(a["id"], a["lastUpdateDateTime"])] += 1

    async def advance(self, stream: str, commit: Commit) -> None:
        if commit.cursor is None:
            return
        cursor = sort_key(commit.cursor)
        for alert_id, alert in self.graph.alerts.items():
            version = (alert_id, alert["lastUpdateDateTime"])
            stable = self.graph.since[alert_id] <= self.poll_started
            if stable and sort_key(version[1]) < cursor and version not in self.emitted:
                self.violations.append(f"cursor {commit.cursor} passed {version}")


def config(page_size: int, **kw: Any) -> GraphSecuritySourceConfig:
    table: dict[str, Any] = {
        "type": "graph_security",
        "name": "t",
        "tenant_id": "t",
        "client_id": "c",
        "client_secret": "s",
        "graph_url": ROOT,
        "authority_url": "https://login.test",
        "page_size": page_size,
        "overlap_secs": OVERLAP_SECS,
        "max_pages_per_window": 1000,
    }
    table.update(kw)
    return GraphSecuritySourceConfig(**table)


def poller(graph: FakeGraph, rec: Recorder, cfg: GraphSecuritySourceConfig, cursor: str) -> StreamPoller:
    spec = StreamSpec("t/alerts_v2/all", URL, "lastUpdateDateTime", cfg.page_size)
    ctx = SourceContext(rec.emit, rec.advance, {spec.stream: StreamState(cursor=cursor)}, asyncio.Event())
    return StreamPoller(spec, cfg, FakeClient(graph), ctx, FixedClock(), AgentMetrics(CollectorRegistry()))  # type: ignore[arg-type]


async def poll(p: StreamPoller, rec: Recorder, may_fail: bool = True) -> None:
    """One poll as ``StreamPoller.run`` makes it: a failed poll commits nothing and is simply repeated."""
    rec.poll_started = rec.graph.step
    try:
        await p.poll_once()
    except TransientSourceError:
        if not may_fail:
            raise


changes = st.lists(
    st.tuples(st.integers(1, 30), st.sampled_from(["update", "publish", "new"]), st.integers(0, 1000)),
    max_size=12,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    offsets=st.lists(st.integers(0, 300), max_size=60),
    late=st.lists(st.integers(0, 300), max_size=5),
    page_size=st.integers(1, 7),
    schedule=changes,
)
async def test_polls_forward_every_version_once_while_data_moves(
    offsets: list[int], late: list[int], page_size: int, schedule: list[tuple[int, str, int]]
) -> None:
    """Random data (ties included), random changes between requests: no loss, no repeats, cursor safe."""
    graph = FakeGraph()
    start = BASE + 9_000 * SECOND
    for off in offsets:  # offsets in seconds, many equal: timestamps shared across page cuts
        graph.add(start + off * SECOND)
    for off in late:  # published later, older than the cursor by less than the overlap
        graph.add(start + 200 * SECOND + off * SECOND // 3, hidden=True)
    for at, kind, pick in schedule:
        graph.schedule.setdefault(at, []).append((kind, pick))
    rec = Recorder(graph)
    p = poller(graph, rec, config(page_size), from_ticks(start))
    for _ in range(3):
        await poll(p, rec)
    graph.schedule.clear()
    while graph.hidden:
        graph.change("publish", 0)
    for _ in range(2):
        await poll(p, rec, may_fail=False)
    assert rec.violations == []
    current = {(i, a["lastUpdateDateTime"]) for i, a in graph.alerts.items()}
    assert current <= set(rec.emitted), sorted(current - set(rec.emitted))[:5]
    assert max(rec.emitted.values(), default=1) == 1


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 200), page_size=st.integers(1, 40))
async def test_a_window_with_distinct_timestamps_costs_exactly_its_pages(n: int, page_size: int) -> None:
    """No moves, distinct timestamps: ceil(n / page_size) requests (1 for an empty window), each item
    forwarded once; the one item at each cut is fetched twice (it bounds the next query)."""
    graph = FakeGraph()
    for i in range(n):
        graph.add(BASE + 9_000 * SECOND + i * 37)
    rec = Recorder(graph)
    p = poller(graph, rec, config(page_size), from_ticks(BASE + 9_000 * SECOND))
    result = await p.read_window(from_ticks(BASE), from_ticks(BASE + 20_000 * SECOND))
    assert result.requests == max(1, math.ceil(n / page_size))
    assert result.counted == n and result.items == n + result.requests - 1
    assert sum(rec.emitted.values()) == n


@settings(max_examples=60, deadline=None)
@given(groups=st.lists(st.integers(1, 25), min_size=1, max_size=8), page_size=st.integers(1, 10))
async def test_timestamps_shared_across_cuts_are_read_whole(groups: list[int], page_size: int) -> None:
    """Groups of alerts sharing one timestamp, larger and smaller than a page: every one arrives once."""
    graph = FakeGraph()
    for g, size in enumerate(groups):
        for _ in range(size):
            graph.add(BASE + 9_000 * SECOND + g * SECOND)
    rec = Recorder(graph)
    p = poller(graph, rec, config(page_size), from_ticks(BASE + 9_000 * SECOND))
    result = await p.read_window(from_ticks(BASE), from_ticks(BASE + 20_000 * SECOND))
    assert set(rec.emitted) == {(i, a["lastUpdateDateTime"]) for i, a in graph.alerts.items()}
    assert max(rec.emitted.values()) == 1
    # A cut through a group costs one request for that instant (plus its pages when it is deeper).
    assert result.requests <= math.ceil(sum(groups) / page_size) + 2 * len(groups) * (
        1 + math.ceil(max(groups) / page_size)
    )


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 120), page_size=st.integers(1, 9), schedule=changes)
async def test_pages_out_of_order_fall_back_to_chained_reads(
    n: int, page_size: int, schedule: list[tuple[int, str, int]]
) -> None:
    """Pages not newest first: the window is read through its nextLinks (split by count); nothing lost."""
    graph = FakeGraph(shuffle=True)
    for i in range(n):
        graph.add(BASE + 9_000 * SECOND + i * SECOND)
    for at, kind, pick in schedule:
        if kind != "publish":
            graph.schedule.setdefault(at, []).append((kind, pick))
    rec = Recorder(graph)
    p = poller(graph, rec, config(page_size, max_pages_per_window=4), from_ticks(BASE + 9_000 * SECOND))
    for _ in range(2):
        await poll(p, rec)
    graph.schedule.clear()
    await poll(p, rec, may_fail=False)
    assert rec.violations == []
    current = {(i, a["lastUpdateDateTime"]) for i, a in graph.alerts.items()}
    assert current <= set(rec.emitted)
    assert max(rec.emitted.values(), default=1) == 1


async def test_a_server_that_never_ends_a_window_is_stopped_by_its_own_count() -> None:
    """A liar inventing older alerts forever (each page says more follow): the read stops after about
    twice the pages its first count allows, with a clear error, instead of paging for hours."""
    calls = 0

    async def endless(url: str, params: dict[str, str] | None) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        ts = from_ticks(BASE + 9_000 * SECOND - calls * SECOND)
        return {
            "@odata.count": 30,
            "value": [{"id": f"x{calls}", "lastUpdateDateTime": ts}],
            "@odata.nextLink": URL + "?$skiptoken=1",
        }

    graph = FakeGraph()
    rec = Recorder(graph)
    p = poller(graph, rec, config(10), from_ticks(BASE + 9_000 * SECOND))
    p.reader._fetch = endless
    with pytest.raises(UpstreamProtocolError, match="did not end after 22 pages"):
        await p.reader.read(from_ticks(BASE), None)
    assert calls == 22  # 2 * ceil(30 / 10) + 16


async def test_the_client_never_sends_the_token_outside_the_graph_root() -> None:
    """Defense in depth below the reader: GraphClient refuses any URL off the Graph root before a token
    is even asked for."""
    cfg = config(10)
    client = GraphClient.connect(cfg, FixedClock(), AgentMetrics(CollectorRegistry()))
    try:
        for url in ("https://graph.test:8443/v1.0/x", "http://graph.test/v1.0/x", "https://evil.test/v1.0/x"):
            with pytest.raises(UpstreamProtocolError, match="refusing to send the Graph token"):
                await client.get_json(url)
        assert client.credential.attempts == 0
    finally:
        await client.aclose()
