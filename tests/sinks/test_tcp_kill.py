"""TCP sink through the real runner into real receivers (rsyslog imtcp, syslog-ng) that are stopped
and restarted mid-stream.

What is asserted, and what is not. The TCP sink acknowledges a batch once the receiver's TCP stack
acknowledged its bytes; what the receiving *process* then does with them is outside what plain TCP
can know. So each stop is done in two steps, inside one synchronous block (the sink's event loop
cannot write in between): SIGSTOP, then read the receiver's kernel receive queue for our connection
(``/proc/net/tcp`` ``rx_queue`` once it stopped growing: bytes its TCP acknowledged that it never
read — the "gap"), then a
graceful stop (SIGTERM), which lets the receiver write what it had read. Asserted: the bytes of
the alerts missing at the end are at most the measured gaps plus one frame per stop (a frame the
receiver had partly read), every batch was committed, and the sink reconnected after every stop.
Not asserted: zero loss — a receiver whose TCP acknowledged data and then died loses it, and only
an application-level acknowledgement (the ``relp`` sink, test_relp.py) closes that gap.

The freeze test (issue #15) stops the receiver with SIGSTOP for three times the sink's timeout and
resumes it: every alert exactly once, no reconnect (the sink before the fix wrote one batch twice).
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.codecs import build_framer, build_serializer
from agent.metrics import AgentMetrics
from agent.sinks import SinkContext
from tests.receivers.fixtures import Receiver, start_rsyslog, start_syslog_ng
from tests.sinks.conftest import RunnerHarness, alert, build, config
from tests.support.wait import until

pytestmark = pytest.mark.receivers

ALERT_ID = re.compile(rb"da6380a1-\d{6}")
KILLS = 3
CODEC = {"type": "syslog5424", "msg": {"type": "cef"}}


def rx_queue(port: int) -> int:
    """Bytes in the receive queues of established connections to local ``port`` (Linux)."""
    total = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].split(":")[1], 16)
        if local_port == port and fields[3] == "01":  # 01 = ESTABLISHED
            total += int(fields[4].split(":")[1], 16)
    return total


def settled_rx_queue(port: int, timeout: float = 5.0) -> int:
    """:func:`rx_queue` once it stops growing.

    The event loop is blocked here, so the sink writes nothing new; but bytes already in our
    socket's send queue keep flowing into the frozen receiver's kernel buffer for a moment. Reading
    the gap before they land would undercount it.
    """
    deadline = time.monotonic() + timeout
    last = rx_queue(port)
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = rx_queue(port)
        if now == last:
            return now
        last = now
    return last


@pytest.fixture(params=["rsyslog", "syslog_ng"])
def receiver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Receiver]:
    """A private receiver this test may stop (the session ones are shared)."""
    start = start_rsyslog if request.param == "rsyslog" else start_syslog_ng
    rcv = start(tmp_path / request.param)
    try:
        yield rcv
    finally:
        rcv.stop()


async def test_receiver_stops_lose_at_most_the_measured_gap(
    receiver: Receiver, ctx: SinkContext, metrics: AgentMetrics, tmp_path: Path
) -> None:
    """Three stops mid-stream: loss bounded by what the receiver's TCP acknowledged and never read."""
    rcv = receiver
    port = rcv.ports["tcp"]
    t = {
        "type": "tcp",
        "host": "127.0.0.1",
        "port": port,
        "codec": CODEC,
        "batch": {"max_events": 50, "timeout_secs": 0},
        "timeout_secs": 5,
    }
    sink = build(t, ctx)
    harness = RunnerHarness(sink, t, metrics, tmp_path)
    alerts = [alert(i, title="t" * 1000) for i in range(2000)]
    serializer = build_serializer(config(t).codec)
    framer = build_framer("octet_counting")
    frame_size = {a["id"]: len(framer.frame(serializer.encode(a))) for a in alerts}
    feeder = asyncio.create_task(harness.feed(alerts, per_batch=25))
    run = asyncio.create_task(harness.runner.run())
    gaps = []
    expected_reconnects = 0

    def reconnects() -> float:
        return float(metrics.sink_reconnects.labels("test")._value.get())

    for k in range(KILLS):
        threshold = (k + 1) * len(alerts) // (KILLS + 1)
        await until(lambda n=threshold: len(rcv.id_counts(ALERT_ID)) >= n, timeout=30, what=f"{threshold}")
        rcv.freeze()
        gaps.append(settled_rx_queue(port))
        rcv.kill(signal.SIGTERM)
        await asyncio.to_thread(rcv.restart)
        # Let the sink find the restarted receiver before the next stop (unless it has nothing left
        # to send); otherwise two stops could fall into one disconnection.
        if len(harness.commits) < len(alerts) // 25:
            expected_reconnects += 1
            await until(
                lambda n=expected_reconnects: reconnects() >= n or len(harness.commits) == len(alerts) // 25,
                timeout=30,
                what="reconnect",
            )
    await asyncio.wait_for(asyncio.gather(feeder, run), timeout=60)
    await sink.aclose()
    # The last batches are acknowledged once the receiver's TCP has them, which can be before the
    # receiver wrote them out: give it a bounded while to catch up before counting what is missing.
    deadline = time.monotonic() + 15
    while len(rcv.id_counts(ALERT_ID)) < len(alerts) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    counts = rcv.id_counts(ALERT_ID)
    lost = [i for i in frame_size if i not in counts]
    lost_bytes = sum(frame_size[i] for i in lost)
    bound = sum(gaps) + KILLS * max(frame_size.values())
    assert lost_bytes <= bound, f"lost {len(lost)} alerts ({lost_bytes} bytes), gaps {gaps}: {lost[:20]}"
    assert len(harness.commits) == len(alerts) // 25
    assert reconnects() >= expected_reconnects >= 1


async def test_a_frozen_receiver_is_waited_for_without_duplicates(
    receiver: Receiver, ctx: SinkContext, metrics: AgentMetrics, tmp_path: Path
) -> None:
    """Issue #15: the real receiver stops reading (SIGSTOP) for three times the sink's timeout while
    a batch waits in its window, then resumes (SIGCONT): every alert is written exactly once, on the
    one connection (no reconnect, nothing re-sent)."""
    rcv = receiver
    port = rcv.ports["tcp"]
    timeout = 1.0
    t = {
        "type": "tcp",
        "host": "127.0.0.1",
        "port": port,
        "codec": CODEC,
        "batch": {"max_events": 200, "timeout_secs": 0},
        "timeout_secs": timeout,
    }
    sink = build(t, ctx)
    harness = RunnerHarness(sink, t, metrics, tmp_path)
    # Enough to fill the frozen receiver's socket buffer (several MiB on loopback) and ours.
    alerts = [alert(i, title="f" * 1500) for i in range(12_000)]
    feeder = asyncio.create_task(harness.feed(alerts, per_batch=100))
    run = asyncio.create_task(harness.runner.run())
    unacked = metrics.sink_unacked_bytes.labels("test")
    try:
        await until(lambda: len(rcv.id_counts(ALERT_ID)) >= 500, timeout=30, what="the first alerts")
        rcv.freeze()
        await until(lambda: unacked._value.get() > 0 and not run.done(), timeout=30, what="a full window")
        frozen_at = time.monotonic()
        while time.monotonic() - frozen_at < 3 * timeout:  # the subject: a stall longer than the timeout
            assert not run.done()
            await asyncio.sleep(0.05)
        assert unacked._value.get() > 0, "the receiver's buffers never filled: nothing was stalled"
        rcv.thaw()
        await asyncio.wait_for(asyncio.gather(feeder, run), timeout=120)
    finally:
        if rcv.process is not None and rcv.process.poll() is None:
            rcv.thaw()
    await sink.aclose()
    await until(
        lambda: len(rcv.id_counts(ALERT_ID)) >= len(alerts), timeout=30, what=f"all {len(alerts)} alerts"
    )
    counts = rcv.id_counts(ALERT_ID)
    assert len(counts) == len(alerts), f"{len(alerts) - len(counts)} missing"
    duplicated = [i for i, n in counts.items() if n > 1]
    assert duplicated == [], f"{len(duplicated)} alerts written twice"
    assert metrics.sink_reconnects.labels("test")._value.get() == 0
    assert metrics.sink_resent.labels("test")._value.get() == 0
