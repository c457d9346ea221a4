"""Claim: a sink outage pauses polling with bounded memory, shows on /readyz, and loses nothing.

The real agent process forwards a backlog of ``BACKLOG`` large alerts (each with a ``PAD``-byte
description, so the backlog is far bigger than anything the agent may hold) from the Graph simulator
to a loopback syslog receiver over TCP (``tests/fakes/syslog.py``; it keeps what its TCP acknowledged).
Mid-run the receiver crashes and stays down while the agent retries; then it comes back. Asserted:

* while it is down, ``/readyz`` answers 503 naming the sink; after it returns, 200 again;
* backpressure: the sink queue fills to its capacity (``queue.max_events``) and the source stops
  asking Graph for pages (at most the one page already requested) while the sink keeps retrying;
* memory: the agent's peak RSS (``VmHWM``) stays within ``MEMORY_MARGIN_MIB`` of its RSS once it is
  warmed up (first records delivered), whereas the backlog's JSON alone is over ``BACKLOG_MIB``;
  the margin covers the queue (200 alerts), one Graph page in flight (100), a runner collection and
  allocator slack — each alert is ~``PAD`` bytes, so those are ~15 MiB of alert data;
* no loss after it returns: every alert is at the receiver; duplicates (TCP is at-least-once) are at
  most the one collection the crash interrupted: ``batch.max_events + page_size - 1``.

Runtime: about 10-15 s.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path

import orjson

from agent.simulator.server import backdate
from tests.fakes.syslog import TcpReceiver
from tests.support.agent_process import (
    AgentProcess,
    agent_settings,
    fast_source,
    http_get_async,
    metric,
    until_async,
    write_config,
)
from tests.support.simulator import SimEnv
from tests.support.wait import until

BACKLOG = 4000
PAD = 30_000
PAGE_SIZE = 100
QUEUE_EVENTS = 200
BATCH_MAX_EVENTS = 50
MEMORY_MARGIN_MIB = 60
BACKLOG_MIB = 110
SINK = "siem"


def add_big_backlog(env: SimEnv) -> None:
    start = backdate(1200)
    for i in range(BACKLOG):
        (alert,) = env.sim.add_alerts(1, when=start + timedelta(milliseconds=200 * i))
        alert["description"] = f"{i:06d} " + "suspicious activity " * (PAD // 20)


def received_ids(rcv: TcpReceiver) -> list[str]:
    return [str(orjson.loads(m)["id"]) for m in rcv.messages]


async def test_receiver_outage_pauses_polling_bounded_memory_readyz_and_no_loss(
    tmp_path: Path, graph_sim: SimEnv
) -> None:
    add_big_backlog(graph_sim)
    expected = set(graph_sim.sim.alerts)
    backlog_bytes = sum(len(orjson.dumps(a)) for a in graph_sim.sim.alerts.values())
    assert backlog_bytes > BACKLOG_MIB * 2**20, "the backlog must dwarf the memory margin"

    rcv = TcpReceiver()
    await rcv.start()
    sink = {
        "type": "tcp",
        "name": SINK,
        "host": "127.0.0.1",
        "port": rcv.port,
        "framing": "octet_counting",
        "timeout_secs": 5,
        "connect_timeout_secs": 2,
        "codec": {"type": "json"},
        "queue": {"max_events": QUEUE_EVENTS},
        "batch": {"max_events": BATCH_MAX_EVENTS, "timeout_secs": 0.05},
        "retry": {"initial_backoff_secs": 0.1, "max_backoff_secs": 0.3},
    }
    settings = agent_settings(
        tmp_path / "state",
        [fast_source(graph_sim.source(), page_size=PAGE_SIZE)],
        [sink],
        http={"enabled": True, "address": "127.0.0.1", "port": 0},
    )
    agent = AgentProcess(write_config(tmp_path / "agent.toml", settings), tmp_path / "agent.log")
    agent.start()
    try:
        port = await agent.ops_port()
        await until(lambda: len(rcv.messages) >= 300, 30, "first records delivered")
        warm_kib = agent.vm_rss_kib()
        status, body = await http_get_async(port, "/readyz")
        assert status == 200, body
        assert f"sink {SINK}: ok" in body

        # -- outage --------------------------------------------------------------------------
        await rcv.crash()
        down_at = len(rcv.messages)
        readyz: list[tuple[int, str]] = []

        async def not_ready() -> bool:
            readyz[:] = [await http_get_async(port, "/readyz")]
            return readyz[0][0] == 503

        await until_async(not_ready, 20, "/readyz 503")
        assert f"sink {SINK}: NOT READY (down: " in readyz[0][1], readyz[0][1]

        metrics: list[str] = [""]

        async def queue_full() -> bool:
            metrics[0] = (await http_get_async(port, "/metrics"))[1]
            depth = metric(metrics[0], "siem_agent_queue_events", sink=SINK) or 0
            blocked = metric(metrics[0], "siem_agent_queue_blocked_seconds_total", sink=SINK) or 0
            return depth >= QUEUE_EVENTS - PAGE_SIZE and blocked > 0

        await until_async(queue_full, 30, "the sink queue full and the source blocked")
        pages_when_full = len(graph_sim.sim.graph_requests())
        errors_when_full = (
            metric(metrics[0], "siem_agent_sink_connections_total", sink=SINK, event="error") or 0
        )

        async def retried_more() -> bool:
            metrics[0] = (await http_get_async(port, "/metrics"))[1]
            now = metric(metrics[0], "siem_agent_sink_connections_total", sink=SINK, event="error") or 0
            return now >= errors_when_full + 5

        await until_async(retried_more, 30, "five more failed connection attempts")
        assert len(graph_sim.sim.graph_requests()) <= pages_when_full + 1, "polling went on during the outage"
        assert metric(metrics[0], "siem_agent_queue_events", sink=SINK) <= QUEUE_EVENTS + PAGE_SIZE
        assert len(rcv.messages) == down_at
        peak_down_kib = agent.vm_hwm_kib()
        assert (await http_get_async(port, "/readyz"))[0] == 503

        # -- recovery ------------------------------------------------------------------------
        await rcv.start()
        try:
            await until(lambda: expected <= set(received_ids(rcv)), 60, "every alert after the outage")
        except AssertionError as exc:
            got = len(set(received_ids(rcv)))
            raise AssertionError(f"{exc}: {got} of {len(expected)}\n{agent.log_text()[-3000:]}") from None
        await until_async(lambda: ready_again(port), 20, "/readyz 200 again")
        peak_kib = agent.vm_hwm_kib()
        assert await agent.stop() == 0
    finally:
        agent.kill()
        await rcv.stop()

    margin_kib = MEMORY_MARGIN_MIB * 1024
    print("DEBUG", warm_kib, peak_down_kib, peak_kib, backlog_bytes)
    assert peak_down_kib - warm_kib <= margin_kib, (warm_kib, peak_down_kib)
    assert peak_kib - warm_kib <= margin_kib, (warm_kib, peak_kib)
    ids = received_ids(rcv)
    assert set(ids) == expected
    duplicates = sum(n - 1 for n in Counter(ids).values())
    assert duplicates <= BATCH_MAX_EVENTS + PAGE_SIZE - 1, duplicates
    leaked = graph_sim.sim.client_secret in agent.log_text()
    assert not leaked, "the client secret leaked into the agent's log"


async def ready_again(port: int) -> bool:
    return (await http_get_async(port, "/readyz"))[0] == 200
