"""The agent in-process against the Graph simulator: delivery, restart, backpressure."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from agent.app import Agent
from agent.checkpoint.sources import source_store
from agent.config import load_settings
from tests.support.agent_process import read_checkpoint
from tests.support.inprocess import file_sink, lines, run_until
from tests.support.simulator import SimEnv, agent_config
from tests.support.sinks import RecordingSink
from tests.support.wait import until


class TestDelivery:
    async def test_delivers_everything_then_restart_emits_nothing_new(
        self, graph_sim: SimEnv, tmp_path: Path
    ) -> None:
        """All alerts arrive once; a second run with the checkpoint re-emits none of them."""
        graph_sim.sim.add_alerts(45)
        out = tmp_path / "out.jsonl"
        settings = load_settings(
            data=agent_config(tmp_path / "state", [graph_sim.source()], [file_sink(out)])
        )
        store = source_store(settings.state_dir, "sim", settings.name, lambda: "")

        first = Agent(settings)
        assert (
            await run_until(
                first,
                lambda: (
                    len(lines(out)) >= 45
                    and first.store.streams.get("sim/alerts_v2/all") is not None
                    and first.store.streams["sim/alerts_v2/all"].cursor is not None
                ),
            )
            == 0
        )
        assert len({a["id"] for a in lines(out)}) == 45 and len(lines(out)) == 45
        state = store.load()["sim/alerts_v2/all"]
        assert len(state.seen) == 45 and state.cursor is not None

        requests_before = len(graph_sim.sim.requests)
        second = Agent(settings)
        await run_until(second, lambda: len(graph_sim.sim.requests) >= requests_before + 4)
        assert len(lines(out)) == 45, "restart re-emitted acknowledged alerts"

    async def test_updates_are_forwarded_once_each(self, graph_sim: SimEnv, tmp_path: Path) -> None:
        """A new version of a forwarded alert (new lastUpdateDateTime) is forwarded exactly once."""
        made = graph_sim.sim.add_alerts(5)
        out = tmp_path / "out.jsonl"
        settings = load_settings(
            data=agent_config(tmp_path / "state", [graph_sim.source()], [file_sink(out)])
        )
        agent = Agent(settings)
        task = asyncio.create_task(agent.run())
        try:
            await until(lambda: len(lines(out)) == 5)
            graph_sim.sim.update(made[0]["id"])
            await until(lambda: len(lines(out)) == 6)
            polls = len(graph_sim.sim.requests)
            await until(lambda: len(graph_sim.sim.requests) >= polls + 5)
        finally:
            agent.request_stop()
        assert await asyncio.wait_for(task, 10) == 0
        got = lines(out)
        assert len(got) == 6
        versions = [(a["id"], a["lastUpdateDateTime"]) for a in got]
        assert len(set(versions)) == 6


class TestBackpressure:
    async def test_stalled_sink_pauses_polling_and_never_advances_checkpoint(
        self, graph_sim: SimEnv, tmp_path: Path
    ) -> None:
        """With a sink that never acknowledges: the queue fills, polling stops, the checkpoint stays empty."""
        graph_sim.sim.add_alerts(400)
        stalled = RecordingSink("stalled")
        stalled.gate.clear()
        sink_cfg = {
            "type": "stdout",
            "name": "stalled",
            "queue": {"max_events": 50},
            "batch": {"timeout_secs": 0},
        }
        settings = load_settings(
            data=agent_config(tmp_path / "state", [graph_sim.source(page_size=10)], [sink_cfg])
        )
        registry = CollectorRegistry()
        agent = Agent(settings, registry=registry, sink_overrides={"stalled": stalled})
        task = asyncio.create_task(agent.run())

        def depth() -> float:
            return registry.get_sample_value("siem_agent_queue_events", {"sink": "stalled"}) or 0.0

        def blocked() -> float | None:
            # The series appears when a put starts waiting for room (the source is then paused).
            return registry.get_sample_value("siem_agent_queue_blocked_seconds_total", {"sink": "stalled"})

        try:
            await until(lambda: depth() >= 50 and blocked() is not None, what="queue full, source blocked")
            # The source reads one page at a time: the page that did not fit waits for room, and no
            # request is in flight. Observe a quarter second (the poll interval is 0.05 s: unthrottled,
            # it would show several more pages).
            pages = len(graph_sim.sim.requests)
            await asyncio.sleep(0.25)
            assert len(graph_sim.sim.requests) == pages, "polling continued while the queue was full"
            assert depth() <= 50 + 10
            assert agent.store.streams == {}
        finally:
            agent.request_stop()
        code = await asyncio.wait_for(task, 15)
        assert code == 0
        assert read_checkpoint(tmp_path / "state", "test") == {}
        assert len(stalled.delivered) == 0


class TestFailedStart:
    async def test_a_busy_ops_port_closes_what_was_built(self, graph_sim: SimEnv, tmp_path: Path) -> None:
        """The ops port cannot be bound: a clear ConfigError, and the sinks and sources built before it
        are closed (not left open behind the error), the source locks released."""
        import socket

        from agent.errors import ConfigError

        busy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        sink = RecordingSink("rec")
        data = agent_config(
            tmp_path / "state",
            [graph_sim.source()],
            [{"type": "stdout", "name": "rec"}],
            http={"enabled": True, "address": "127.0.0.1", "port": port},
        )
        agent = Agent(load_settings(data=data), registry=CollectorRegistry(), sink_overrides={"rec": sink})
        try:
            with pytest.raises(ConfigError, match=f"http: cannot listen on 127.0.0.1:{port}"):
                await asyncio.wait_for(agent.run(), 30)
        finally:
            busy.close()
        assert sink.closed, "the sink built before the failure was not closed"
        assert graph_sim.sim.graph_requests() == [], "nothing was polled"


class TestShutdown:
    async def test_deadline_names_the_components_still_running(
        self, graph_sim: SimEnv, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A sink still sending at the deadline is reported as ``sink:<name>``, not ``Task-<n>``."""
        graph_sim.sim.add_alerts(3)
        stalled = RecordingSink("stalled")
        stalled.gate.clear()
        sink_cfg = {"type": "stdout", "name": "stalled", "batch": {"timeout_secs": 0}}
        settings = load_settings(
            data=agent_config(tmp_path / "state", [graph_sim.source()], [sink_cfg], shutdown_timeout_secs=0.1)
        )
        agent = Agent(settings, sink_overrides={"stalled": stalled})
        task = asyncio.create_task(agent.run())
        try:
            await until(stalled.sending.is_set, what="a send in flight")
        finally:
            agent.request_stop()
        assert await asyncio.wait_for(task, 10) == 0
        [record] = [r for r in caplog.records if r.getMessage().startswith("Shutdown deadline passed")]
        assert record.__dict__["pending"] == ["sink:stalled"]
