"""/readyz and the metrics, end to end: each moves in the situation it describes.

The agent runs in-process against the Graph simulator (real HTTPS) and real loopback receivers; all
reads go through the HTTP endpoint, as Prometheus and Kubernetes would read them.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson

from agent.app import Agent
from agent.config import load_settings
from agent.simulator.server import backdate, throttled
from agent.timestamps import format_dt
from tests.fakes.syslog import TcpReceiver
from tests.ops.helpers import get, sample
from tests.support.simulator import SimEnv, agent_config
from tests.support.sinks import RecordingSink
from tests.support.wait import until


def start(settings: Any, **kw: Any) -> tuple[Agent, asyncio.Task[int]]:
    agent = Agent(settings, **kw)
    return agent, asyncio.create_task(agent.run())


async def base_url(agent: Agent) -> str:
    await until(lambda: agent.ops is not None and agent.ops.port != 0, 10, "ops endpoint")
    assert agent.ops is not None
    return f"http://127.0.0.1:{agent.ops.port}"


async def stop(agent: Agent, task: asyncio.Task[int]) -> int:
    agent.request_stop()
    return await asyncio.wait_for(task, 15)


class TestReadiness:
    async def test_readyz_flips_when_a_tcp_receiver_goes_away_and_back(
        self, tmp_path: Path, graph_sim: SimEnv
    ) -> None:
        """200 while delivering; 503 naming the sink once the receiver is gone; 200 again after it returns."""
        rcv = TcpReceiver()
        port = await rcv.start()
        graph_sim.sim.add_alerts(5)
        graph_sim.sim.start_generator(40)
        sink = {
            "type": "tcp",
            "name": "siem",
            "host": "127.0.0.1",
            "port": port,
            "timeout_secs": 1,
            "batch": {"timeout_secs": 0},
            "retry": {"initial_backoff_secs": 0.05, "max_backoff_secs": 0.2},
        }
        data = agent_config(tmp_path / "state", [graph_sim.source()], [sink], http={"port": 0})
        agent, task = start(load_settings(data=data))
        try:
            url = await base_url(agent)
            await rcv.wait_messages(5)
            status, body = await get(url + "/readyz")
            assert status == 200, body
            assert "sink siem: ok" in body and "stream sim/alerts_v2/all: ok" in body
            await rcv.stop()
            statuses: list[tuple[int, str]] = []

            async def poll_readyz() -> None:
                statuses.append(await get(url + "/readyz"))

            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and (not statuses or statuses[-1][0] != 503):
                await poll_readyz()
                await asyncio.sleep(0.05)
            assert statuses[-1][0] == 503, statuses[-1]
            assert "sink siem: NOT READY (down: connect to 127.0.0.1:" in statuses[-1][1]
            assert "stream sim/alerts_v2/all: ok" in statuses[-1][1]
            _, metrics = await get(url + "/metrics")
            assert sample(metrics, "siem_agent_sink_up", sink="siem") == 0.0
            assert (sample(metrics, "siem_agent_send_retries_total", sink="siem") or 0) >= 1
            before = len(rcv.messages)
            await rcv.start()  # same port
            await rcv.wait_messages(before + 1)
            await until(lambda: agent.health.report()[0], 10, "ready again")
            status, body = await get(url + "/readyz")
            assert status == 200 and "sink siem: ok" in body
            _, metrics = await get(url + "/metrics")
            assert sample(metrics, "siem_agent_sink_up", sink="siem") == 1.0
            assert (
                sample(metrics, "siem_agent_sink_connections_total", sink="siem", event="connect") or 0
            ) >= 2
        finally:
            graph_sim.sim.hooks.clear()
            code = await stop(agent, task)
            await rcv.stop()
        assert code == 0


class TestMetricsMove:
    async def test_a_429_raises_throttled_retry_after_and_empties_the_budget(
        self, tmp_path: Path, graph_sim: SimEnv
    ) -> None:
        """A 429 with Retry-After: 1 counts a throttle, about a second of Retry-After waiting, and the
        tenant's rate-budget gauge reads 0 while blocked, then refills."""
        graph_sim.sim.add_alerts(3)
        sink = {"type": "stdout", "name": "rec", "batch": {"timeout_secs": 0}}
        src = graph_sim.source(poll_interval_secs=0.2, requests_per_minute=600)
        data = agent_config(tmp_path / "state", [src], [sink], http={"port": 0})
        rec = RecordingSink("rec")
        agent, task = start(load_settings(data=data), sink_overrides={"rec": rec})
        tenant = graph_sim.sim.tenant_id
        try:
            url = await base_url(agent)
            await until(lambda: len(rec.delivered) >= 3, 10, "first alerts")
            _, text = await get(url + "/metrics")
            tokens = sample(text, "siem_agent_graph_rate_budget_tokens", tenant=tenant)
            assert tokens is not None and 0 < tokens <= 60
            assert sample(text, "siem_agent_graph_throttled_total", tenant=tenant) in (None, 0.0)
            graph_sim.sim.faults.append(throttled("1.5"))
            await until(lambda: any(r.status == 429 for r in graph_sim.sim.graph_requests()), 10, "a 429")
            _, text = await get(url + "/metrics")
            assert sample(text, "siem_agent_graph_rate_budget_tokens", tenant=tenant) == 0.0
            assert sample(text, "siem_agent_graph_throttled_total", tenant=tenant) == 1.0
            n = len(graph_sim.sim.graph_requests())
            await until(lambda: len(graph_sim.sim.graph_requests()) > n, 10, "requests after Retry-After")
            _, text = await get(url + "/metrics")
            waited = sample(text, "siem_agent_graph_retry_after_seconds_total", tenant=tenant) or 0.0
            assert 1.0 <= waited <= 3.0, waited
            assert (sample(text, "siem_agent_graph_rate_budget_tokens", tenant=tenant) or 0) > 0
            assert (
                sample(text, "siem_agent_graph_requests_total", tenant=tenant, status_class="4xx") or 0
            ) >= 1
        finally:
            code = await stop(agent, task)
        assert code == 0

    async def test_a_stalled_sink_raises_depth_blocked_seconds_and_lag(
        self, tmp_path: Path, graph_sim: SimEnv
    ) -> None:
        """A sink that never acknowledges: the queue fills to capacity, blocked seconds grow between
        scrapes, and checkpoint lag (loaded from disk, not committed since) grows with the clock."""
        graph_sim.sim.add_alerts(60)
        state = tmp_path / "state"
        state.mkdir()
        cursor = format_dt(backdate(3000))
        doc = {"version": 1, "agent": "test", "written_at": cursor, "streams": {}}
        doc["streams"]["sim/alerts_v2/all"] = {"cursor": cursor, "seen": {}}
        (state / "test.checkpoint.json").write_bytes(orjson.dumps(doc))
        stalled = RecordingSink("stalled")
        stalled.gate.clear()
        sink = {
            "type": "stdout",
            "name": "stalled",
            "queue": {"max_events": 20},
            "batch": {"timeout_secs": 0},
        }
        data = agent_config(state, [graph_sim.source(page_size=10)], [sink], http={"port": 0})
        agent, task = start(load_settings(data=data), sink_overrides={"stalled": stalled})
        try:
            url = await base_url(agent)
            _, text = await get(url + "/metrics")
            lag0 = sample(text, "siem_agent_checkpoint_lag_seconds", stream="sim/alerts_v2/all")
            assert lag0 is not None and 3000 <= lag0 < 3060
            assert sample(text, "siem_agent_queue_capacity_events", sink="stalled") == 20.0

            async def metric(name: str) -> float:
                _, body = await get(url + "/metrics")
                return sample(body, name, sink="stalled") or 0.0

            depth: list[float] = []

            async def full() -> bool:
                depth.append(await metric("siem_agent_queue_events"))
                return depth[-1] >= 20

            deadline = time.monotonic() + 10
            while not await full():
                assert time.monotonic() < deadline, f"queue never filled: {depth[-5:]}"
                await asyncio.sleep(0.05)
            blocked1 = await metric("siem_agent_queue_blocked_seconds_total")
            await until(lambda: stalled.attempts >= 1, 5, "a send attempt")
            deadline = time.monotonic() + 10
            blocked2 = blocked1
            while blocked2 < blocked1 + 1.0:
                assert time.monotonic() < deadline, "blocked seconds did not grow"
                await asyncio.sleep(0.2)
                blocked2 = await metric("siem_agent_queue_blocked_seconds_total")
            _, text = await get(url + "/metrics")
            lag1 = sample(text, "siem_agent_checkpoint_lag_seconds", stream="sim/alerts_v2/all")
            assert lag1 is not None and lag1 >= lag0 + 1.0, (lag0, lag1)
            assert sample(text, "siem_agent_events_sent_total", sink="stalled") in (None, 0.0)
        finally:
            stalled.gate.set()
            code = await stop(agent, task)
        assert code == 0
