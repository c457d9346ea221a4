"""Elasticsearch sink against a real OpenSearch-API server: osmem-server (PyPI), run as a process."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from agent.errors import TransientSinkError
from agent.metrics import AgentMetrics
from agent.model import Event
from agent.sinks import SinkContext
from agent.sinks.http.elasticsearch import ElasticsearchSink, document_id
from tests.fakes.osmem import Osmem
from tests.sinks.conftest import RunnerHarness, alert, build, events
from tests.support.wait import until

INDEX = "graph-alerts"


def table(es: Osmem, **over: object) -> dict[str, object]:
    return {"type": "elasticsearch", "url": es.url, "index": INDEX, "timeout_secs": 5, **over}


async def test_create_and_replay_is_idempotent(osmem: Osmem, ctx: SinkContext) -> None:
    """Sending the same batch twice stores every alert version once (409 = already stored)."""
    sink = build(table(osmem), ctx)
    await sink.start()
    evs = events(20)
    assert await sink.send(evs) == type(await sink.send(evs))()
    assert osmem.count(INDEX) == 20
    stored = osmem.get(f"/{INDEX}/_doc/{document_id(evs[0].alert)}")
    assert stored["_source"] == evs[0].alert
    await sink.aclose()
    await sink.aclose()


async def test_new_version_is_a_new_document(osmem: Osmem, ctx: SinkContext) -> None:
    """An updated alert (new lastUpdateDateTime) is stored beside the old version."""
    sink = build(table(osmem), ctx)
    await sink.send(events(1))
    await sink.send(events(1, updated="2026-03-01T11:00:00.0000000Z"))
    assert osmem.count(INDEX) == 2
    await sink.aclose()


async def test_per_item_mapping_error_rejected(osmem: Osmem, ctx: SinkContext) -> None:
    """A 400 item (mapper_parsing_exception) is rejected alone; the others are stored."""
    sink = build(table(osmem), ctx)
    await sink.send([Event(alert(0, score=1), orjson.dumps(alert(0, score=1)))])
    bad = alert(1, score="not a number")
    batch = [Event(bad, orjson.dumps(bad)), *events(3, start=2)]
    result = await sink.send(batch)
    assert list(result.rejected) == [0]
    assert "mapper_parsing_exception" in result.rejected[0]
    assert result.retry == []
    assert osmem.count(INDEX) == 4
    await sink.aclose()


async def test_data_stream_adds_timestamp(osmem: Osmem, ctx: SinkContext) -> None:
    """``data_stream = true`` splices ``@timestamp`` into the document (osmem refuses data streams, so
    the target here is a plain index: what is checked is the document we send)."""
    sink = build(table(osmem, data_stream=True), ctx)
    assert isinstance(sink, ElasticsearchSink)
    evs = events(1)
    await sink.send(evs)
    src = osmem.get(f"/{INDEX}/_doc/{document_id(evs[0].alert)}")["_source"]
    assert src["@timestamp"] == evs[0].alert["lastUpdateDateTime"] and src["id"] == evs[0].alert["id"]
    await sink.aclose()


async def test_unreachable_is_transient(osmem: Osmem, ctx: SinkContext) -> None:
    """A killed server: connection refused is transient."""
    osmem.kill()
    sink = build(table(osmem), ctx)
    with pytest.raises(TransientSinkError, match="cannot connect"):
        await sink.send(events(1))
    await sink.aclose()


async def test_frozen_then_resumed_loses_nothing(
    osmem: Osmem, ctx: SinkContext, metrics: AgentMetrics, tmp_path: Path
) -> None:
    """Through the real runner: the server is stopped (SIGSTOP) mid-stream, sends time out, then it
    resumes and also processes the timed-out requests; every alert is stored exactly once."""
    t = table(osmem, timeout_secs=0.5, batch={"max_events": 40, "timeout_secs": 0}, codec={"type": "json"})
    sink = build(t, ctx)
    harness = RunnerHarness(sink, t, metrics, tmp_path)
    alerts = [alert(i) for i in range(2000)]
    feeder = asyncio.create_task(harness.feed(alerts, per_batch=20))
    run = asyncio.create_task(harness.runner.run())
    await until(lambda: len(harness.commits) >= 10, timeout=30)
    osmem.pause()
    await until(lambda: metrics.send_retries.labels("test")._value.get() >= 2, timeout=30)
    committed = len(harness.commits)
    osmem.resume()
    await asyncio.wait_for(asyncio.gather(feeder, run), timeout=60)
    assert committed < len(alerts) // 20
    ids = osmem.ids(INDEX)
    assert sorted(ids) == sorted(a["id"] for a in alerts)
    await sink.aclose()


async def test_killed_and_restarted_resumes(
    osmem: Osmem, ctx: SinkContext, metrics: AgentMetrics, tmp_path: Path
) -> None:
    """Through the real runner: kill the server mid-stream and start it again on the same port; no
    batch is acknowledged while it is down and everything sent after the restart is stored. (osmem
    keeps documents in memory, so what the killed process held is gone with it.)"""
    t = table(osmem, timeout_secs=2, batch={"max_events": 40, "timeout_secs": 0})
    sink = build(t, ctx)
    harness = RunnerHarness(sink, t, metrics, tmp_path)
    alerts = [alert(i) for i in range(1000)]
    feeder = asyncio.create_task(harness.feed(alerts, per_batch=20))
    run = asyncio.create_task(harness.runner.run())
    await until(lambda: len(harness.commits) >= 5, timeout=30)
    osmem.kill()
    committed = len(harness.commits)
    await until(lambda: metrics.send_retries.labels("test")._value.get() >= 3, timeout=30)
    assert len(harness.commits) <= committed + 1  # at most the batch in flight when it died
    after_kill = len(harness.commits)
    osmem.start()
    await asyncio.wait_for(asyncio.gather(feeder, run), timeout=60)
    stored = set(osmem.ids(INDEX))
    assert {a["id"] for a in alerts[after_kill * 20 :]} <= stored
    await sink.aclose()
