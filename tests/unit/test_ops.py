"""The operator endpoint over real HTTP: metrics, liveness, readiness that names what is wrong."""

from __future__ import annotations

import aiohttp
from prometheus_client import CollectorRegistry

from agent.health import Health
from agent.metrics import AgentMetrics
from agent.ops import OpsServer


class FakeTime:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class TestOpsServer:
    async def test_metrics_healthz_and_readyz_flip(self) -> None:
        """/readyz is 503 naming the down sink and the stale stream, 200 once both recover."""
        registry = CollectorRegistry()
        m = AgentMetrics(registry)
        m.events_sent.labels("splunk").inc(3)
        now = FakeTime()
        health = Health(now, stale_polls=3)
        health.expect_stream("t/alerts_v2/all", 60)
        health.sink_state("splunk", True)
        server = OpsServer(registry, health, "127.0.0.1", 0)
        port = await server.start()
        base = f"http://127.0.0.1:{port}"
        try:
            async with aiohttp.ClientSession() as http:
                async with http.get(base + "/metrics") as r:
                    text = await r.text()
                    assert r.status == 200
                    assert 'siem_agent_events_sent_total{sink="splunk"} 3.0' in text
                    assert "process_resident_memory_bytes" in text
                async with http.get(base + "/healthz") as r:
                    assert r.status == 200
                health.poll_succeeded("t/alerts_v2/all")
                async with http.get(base + "/readyz") as r:
                    assert r.status == 200, await r.text()
                health.sink_state("splunk", False)
                now.t += 181
                async with http.get(base + "/readyz") as r:
                    body = await r.text()
                    assert r.status == 503
                    assert "sink splunk: NOT READY (down)" in body
                    assert "stream t/alerts_v2/all: NOT READY (last successful poll 181s ago)" in body
                health.sink_state("splunk", True)
                health.poll_succeeded("t/alerts_v2/all")
                async with http.get(base + "/readyz") as r:
                    assert r.status == 200
        finally:
            await server.stop()

    async def test_stream_that_never_polled_is_not_ready_after_grace(self) -> None:
        """A stream with no successful poll within the grace period is reported as never polled."""
        now = FakeTime()
        health = Health(now, stale_polls=3)
        health.expect_stream("s", 10)
        assert health.report() == (True, ["stream s: starting"])
        now.t += 31
        assert health.report() == (False, ["stream s: NOT READY (never polled successfully)"])


class TestConnectionLimits:
    async def test_idle_connections_are_evicted_for_a_request(self) -> None:
        """With every slot taken by idle connections, a new request still gets its answer (the oldest
        idle connection makes room), and the pool never holds more than its limit."""
        import asyncio

        health = Health(FakeTime())
        registry = CollectorRegistry()
        server = OpsServer(registry, health, "127.0.0.1", 0, max_connections=4)
        port = await server.start()
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(10)]
        try:
            async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/healthz") as r:
                assert r.status == 200
            evicted = registry.get_sample_value(
                "siem_agent_ops_connections_refused_total", {"reason": "connection_cap"}
            )
            assert len(server.pool) <= 4 and evicted is not None and evicted >= 6
            closed = 0
            for reader, _ in idle[:6]:  # the oldest were evicted first
                try:
                    closed += await asyncio.wait_for(reader.read(1), 5) == b""
                except ConnectionResetError:
                    closed += 1
            assert closed == 6
        finally:
            for _, writer in idle:
                writer.close()
            await server.stop()
