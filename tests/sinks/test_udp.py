"""UDP sink: one datagram per message, oversize policy, and the errors the kernel does report."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agent.errors import TransientSinkError
from agent.metrics import AgentMetrics
from agent.model import Event
from agent.sinks import SinkContext
from agent.sinks.udp import truncate_utf8
from tests.fakes.syslog import UdpReceiver
from tests.sinks.conftest import RunnerHarness, alert, build, events, ids_of


def table(port: int, **over: object) -> dict[str, object]:
    return {"type": "udp", "host": "127.0.0.1", "port": port, "codec": {"type": "json"}, **over}


async def test_one_datagram_per_message(udp_receiver: UdpReceiver, ctx: SinkContext) -> None:
    """Each payload is one datagram, unframed."""
    sink = build(table(udp_receiver.port), ctx)
    await sink.start()
    evs = events(4)
    await sink.send(evs)
    await udp_receiver.wait_datagrams(4)
    assert udp_receiver.datagrams == [e.payload for e in evs]
    await sink.aclose()
    await sink.aclose()


async def test_oversize_truncated_and_counted(
    udp_receiver: UdpReceiver, ctx: SinkContext, metrics: AgentMetrics
) -> None:
    """Default policy truncates to ``max_datagram_bytes`` at a character boundary, never splits."""
    sink = build(table(udp_receiver.port, max_datagram_bytes=600), ctx)
    payload = ("é" * 1000).encode()
    await sink.send([Event(alert(1), payload), *events(1)])
    await udp_receiver.wait_datagrams(2)
    first = udp_receiver.datagrams[0]
    assert len(first) == 600 and first.decode() == "é" * 300
    assert len(ids_of(udp_receiver.datagrams[1:])) == 1
    assert metrics.truncated.labels("test", "datagram")._value.get() == 1
    await sink.aclose()


async def test_oversize_dropped_and_counted(
    udp_receiver: UdpReceiver, ctx: SinkContext, metrics: AgentMetrics, tmp_path: Path
) -> None:
    """``oversize = "drop"`` sends nothing for the message and counts it once, as dropped, not as sent."""
    t = table(udp_receiver.port, max_datagram_bytes=600, oversize="drop", batch={"timeout_secs": 0})
    sink = build(t, ctx)
    result = await sink.send([Event(alert(1), b"x" * 601), *events(1, start=2)])
    assert result.dropped == {0: "oversize"} and not result.retry and not result.rejected
    await udp_receiver.wait_datagrams(1)
    harness = RunnerHarness(sink, t, metrics, tmp_path)
    await harness.feed([alert(4, title="t" * 700), alert(3)], per_batch=2)
    await asyncio.wait_for(harness.runner.run(), 10)
    await udp_receiver.wait_datagrams(2)
    assert ids_of(udp_receiver.datagrams) == [alert(2)["id"], alert(3)["id"]]
    assert metrics.dropped.labels("sink:test", "oversize")._value.get() == 1
    assert metrics.events_sent.labels("test")._value.get() == 1
    assert len(harness.commits) == 1  # dropping by policy still acknowledges the batch
    await sink.aclose()


async def test_port_unreachable_is_transient(ctx: SinkContext) -> None:
    """ICMP port unreachable on the connected socket surfaces as TransientSinkError within a few sends."""
    rcv = UdpReceiver()
    port = await rcv.start()
    rcv.stop()
    sink = build(table(port), ctx)
    with pytest.raises(TransientSinkError, match="refused"):
        for _ in range(20):
            await sink.send(events(2))
    await sink.aclose()


def test_truncate_utf8_boundaries() -> None:
    """Cuts never split a multi-byte sequence."""
    assert truncate_utf8("aé€😀".encode(), 4) == "aé".encode()
    assert truncate_utf8("aé€😀".encode(), 6) == "aé€".encode()
    assert truncate_utf8(b"abc", 10) == b"abc"
