"""Sharding and what one process shares among many tenants (issue #17): placement, ``index = "auto"``,
spread first polls, one budget and credential per (cloud, tenant, app), collapsed metrics, /readyz."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from agent.clock import SystemClock
from agent.config import load_settings
from agent.config.settings import SourceRef
from agent.errors import ConfigError
from agent.health import Health
from agent.metrics import AgentMetrics
from agent.shard import ShardConfig, owner, owners, shard_lines, spread, tenant_app_key
from agent.sources.base import SourceContext
from agent.sources.graph.shared import GraphShared
from agent.sources.graph.source import GraphSecuritySource
from tests.support.inprocess import graph_source as source


def settings(**top: Any) -> dict[str, Any]:
    return {
        "sources": [
            {"type": "graph_security", "name": "a", "tenant_id": "t", "client_id": "c", "client_secret": "x"}
        ],
        "sinks": [{"type": "stdout", "name": "out", "codec": {"type": "json"}}],
        **top,
    }


class TestPlacement:
    def test_every_source_has_exactly_one_owner_and_it_is_stable(self) -> None:
        names = [f"s{i}" for i in range(200)]
        placed = {n: owner(n, 4) for n in names}
        assert set(placed.values()) == {0, 1, 2, 3}
        assert all(owner(n, 4) == placed[n] for n in names)  # deterministic (no hash seed)
        assert owner("contoso", 4) == 2  # fixed forever: blake2b, not hash(); a change re-shards everyone
        assert all(owner(n, 1) == 0 for n in names)

    def test_sources_of_one_tenant_and_app_share_a_shard(self) -> None:
        """Placed by the first such source's name, so they share one budget in one process."""
        cfgs = [source(f"s{i}", tenant="same", client="app") for i in range(30)] + [
            source("other", tenant="x")
        ]
        placed = owners(cfgs, 7)
        assert len({placed[f"s{i}"] for i in range(30)}) == 1
        assert placed["s0"] == owner("s0", 7)

    def test_validate_lines_name_each_shards_sources(self) -> None:
        cfgs = [source(f"s{i}", tenant=f"t{i}") for i in range(6)]
        lines = shard_lines(cfgs, 3)
        assert len(lines) == 3 and all(line.startswith(f"shard {i}: ") for i, line in enumerate(lines))
        assert sum(int(line.split(": ")[1].split()[0]) for line in lines) == 6

    def test_spread_is_even_in_hash_order(self) -> None:
        f = spread([f"s{i}" for i in range(10)])
        assert sorted(f.values()) == [i / 10 for i in range(10)]
        assert spread(["only"]) == {"only": 0.0}


class TestShardConfig:
    def test_auto_index_is_the_pods_ordinal(self) -> None:
        cfg = ShardConfig(count=4, index="auto")
        assert cfg.resolved_index("siem-agent-3") == 3
        assert cfg.resolved_index("siem-agent-0.siem-agent.ns.svc.cluster.local") == 0
        with pytest.raises(ValueError, match="ending in -<ordinal>"):
            cfg.resolved_index("laptop")
        with pytest.raises(ValueError, match=r"ordinal 4, but shard\.count is 4"):
            cfg.resolved_index("siem-agent-4")

    def test_index_out_of_range_and_unsafe_source_names_are_config_errors(self) -> None:
        with pytest.raises(ConfigError) as err:
            load_settings(data=settings(shard={"count": 2, "index": 2}))
        assert "shard: index must be between 0 and count - 1 (1)" in err.value.problems[0]
        bad = settings()
        bad["sources"][0]["name"] = ".."
        with pytest.raises(ConfigError) as err:
            load_settings(data=bad)
        assert "must not be '.' or '..'" in " ".join(err.value.problems)

    def test_two_sources_of_one_tenant_and_app_are_allowed(self) -> None:
        data = settings()
        data["sources"].append({**data["sources"][0], "name": "b", "incidents": True})
        assert [s.name for s in load_settings(data=data).sources] == ["a", "b"]


class TestAppKey:
    @pytest.mark.parametrize(
        "table",
        [
            {"tenant_id": "Contoso-Tenant", "client_id": "App-ID"},
            {"tenant_id": "t", "client_id": "c", "cloud": "usgov"},
            {"tenant_id": "t", "client_id": "c", "authority_url": "https://127.0.0.1:8443"},
        ],
    )
    def test_the_secret_free_view_places_a_source_like_its_config(self, table: dict[str, Any]) -> None:
        """``checkpoint show``/``reset`` (SourceRef) and the agent (the source config) must agree on
        which sources share a tenant and app, or they would disagree on who owns a source."""
        extra = {"graph_url": table["authority_url"]} if "authority_url" in table else {}
        cfg = source(
            "a",
            tenant=table["tenant_id"],
            client=table["client_id"],
            **{k: v for k, v in {**table, **extra}.items() if k not in ("tenant_id", "client_id")},
        )
        ref = SourceRef(name="a", **table)
        assert (
            ref.app_key()
            == cfg.app_key()
            == tenant_app_key(
                table.get("authority_url"),
                table.get("cloud", "global"),
                table["tenant_id"],
                table["client_id"],
            )
        )


class TestSharing:
    async def test_one_budget_and_credential_per_tenant_and_app_one_pool_per_root(self) -> None:
        shared = GraphShared(SystemClock())
        m = AgentMetrics(CollectorRegistry())
        a = GraphSecuritySource(source("a", requests_per_minute=60), SystemClock(), m, shared)
        b = GraphSecuritySource(source("b", requests_per_minute=150), SystemClock(), m, shared)
        c = GraphSecuritySource(source("c", tenant="other"), SystemClock(), m, shared)
        try:
            assert a.client().budget is b.client().budget and a.client().budget.limit == 60
            assert a.client().credential is b.client().credential
            assert c.client().budget is not a.client().budget
            assert c.client().credential is not a.client().credential
            assert a.client()._sessions() == c.client()._sessions()  # one pool for the Graph root
            assert shared.ssl_context(None) is shared.ssl_context(None)
            assert shared.counts == {
                "tls_contexts": 1,
                "http_pools": 1,
                "budgets": 2,
                "credentials": 2,
                "token_sessions": 0,
            }
        finally:
            for s in (a, b, c):
                await s.aclose()
            assert not a.client()._sessions()[0].closed  # a source never closes the shared pool
            await shared.aclose()


class TestCollapsedMetrics:
    def test_per_tenant_false_keeps_one_series_per_metric(self) -> None:
        reg = CollectorRegistry()
        m = AgentMetrics(reg, per_tenant=False)
        for i in range(50):
            m.graph_requests.labels(f"t{i}", "2xx").inc()
            m.alerts_fetched.labels(f"s{i}/alerts_v2/all").inc(2)
            m.checkpoint_lag.labels(f"s{i}/alerts_v2/all").set(i)
            m.last_poll_success.labels(f"s{i}/alerts_v2/all").set(1000 + i)
        m.refresh()
        text = generate_latest(reg).decode()
        assert 'siem_agent_graph_requests_total{status_class="2xx",tenant="_all"} 50.0' in text
        assert 'siem_agent_alerts_fetched_total{stream="_all"} 100.0' in text
        assert 'siem_agent_checkpoint_lag_seconds{stream="_all"} 49.0' in text  # the largest lag
        assert 'siem_agent_last_successful_poll_timestamp_seconds{stream="_all"} 1000.0' in text  # oldest
        assert "t7" not in text and "s7/" not in text


def test_readyz_lists_a_waiting_stream_without_failing_readiness() -> None:
    h = Health(lambda: 0.0)
    h.waiting("a/alerts_v2/all", "its source's lock is held by pod-1 pid 7")
    ready, lines = h.report()
    assert ready and lines == ["stream a/alerts_v2/all: waiting (its source's lock is held by pod-1 pid 7)"]
    h.waiting("a/alerts_v2/all", None)
    assert h.report() == (True, [])


def test_per_tenant_false_first_scrape_shows_what_refreshers_just_set() -> None:
    """The ``_all`` gauges combine after the refreshers that set their per-key values, not before."""
    reg = CollectorRegistry()
    m = AgentMetrics(reg, per_tenant=False)
    lag = {"a/alerts_v2/all": 5.0, "b/alerts_v2/all": 7.0}

    def refresh_lag() -> None:  # like the commit path's: sets the lag gauge on every scrape
        for stream, value in lag.items():
            m.checkpoint_lag.labels(stream).set(value)

    m.add_refresher(refresh_lag)
    m.refresh()
    assert 'siem_agent_checkpoint_lag_seconds{stream="_all"} 7.0' in generate_latest(reg).decode()
    lag["a/alerts_v2/all"] = 30.0
    m.refresh()
    assert 'siem_agent_checkpoint_lag_seconds{stream="_all"} 30.0' in generate_latest(reg).decode()


async def test_one_budget_tokens_refresher_per_budget_however_many_sources_and_runs() -> None:
    shared = GraphShared(SystemClock())
    m = AgentMetrics(CollectorRegistry())
    registered: list[object] = []
    add = m.add_refresher
    m.add_refresher = lambda refresh: (registered.append(refresh), add(refresh))[1]  # type: ignore[method-assign]

    async def nothing(*args: Any) -> None:
        return None

    stop = asyncio.Event()
    stop.set()  # every stream returns at once: only the start of run() matters here
    ctx = SourceContext(emit=nothing, advance=nothing, state={}, stop=stop)
    a = GraphSecuritySource(source("a"), SystemClock(), m, shared)
    b = GraphSecuritySource(source("b"), SystemClock(), m, shared)  # same tenant and app: a's budget
    c = GraphSecuritySource(source("c", tenant="other"), SystemClock(), m, shared)
    own = GraphSecuritySource(source("d", tenant="own"), SystemClock(), m)  # a budget of its own
    try:
        for src in (a, b, a, c, own, own):  # a and own run twice (a restarted source)
            await src.run(ctx)
        assert len(registered) == 3  # t/app, other/app, own's
        m.refresh()
        text = generate_latest(m.registry).decode()
        assert 'siem_agent_graph_rate_budget_tokens{tenant="t"}' in text
        assert 'siem_agent_graph_rate_budget_tokens{tenant="other"}' in text
    finally:
        for src in (a, b, c, own):
            await src.aclose()
        await shared.aclose()
