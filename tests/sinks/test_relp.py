"""RELP sink: frames, the session window and rsp handling (fake server where rsyslog cannot be made
to misbehave), and real delivery into rsyslog's imrelp, plain and TLS, including receiver kills."""

from __future__ import annotations

import asyncio
import re
from collections import Counter as Counter_
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import Counter, Gauge

from agent.config import load_settings
from agent.errors import TransientSinkError
from agent.metrics import AgentMetrics
from agent.sinks import SINKS, SendResult, SinkContext
from agent.sinks.config import RelpSinkConfig
from agent.sinks.relp import RelpSink
from agent.sinks.relp.frame import MAX_TXNR, Frame, FrameParser, encode, parse_offers, parse_response
from agent.sinks.relp.session import RelpSession
from tests.fakes.relp import RelpReceiver
from tests.receivers.fixtures import Receiver, start_rsyslog
from tests.sinks.conftest import RunnerHarness, alert, build, events, ids_of
from tests.support.wait import until

ALERT_ID = re.compile(rb"da6380a1-\d{6}")


def value(metric: Gauge | Counter, sink: str) -> float:
    return float(metric.labels(sink)._value.get())


def delivered_ids(rcv: Receiver) -> Counter_[str]:
    return rcv.id_counts(ALERT_ID)


def table(port: int, **over: object) -> dict[str, object]:
    return {"type": "relp", "host": "127.0.0.1", "port": port, "codec": {"type": "json"}, **over}


class TestFrames:
    def test_encode(self) -> None:
        """Header, DATALEN in octets, one SP before DATA, LF trailer; no DATA: no SP."""
        assert encode(7, "syslog", "é x".encode()) == "7 syslog 4 é x\n".encode()
        assert encode(3, "close") == b"3 close 0\n"

    def test_parser_reassembles_torn_frames(self) -> None:
        """Frames split at every byte boundary come out whole, in order; LF inside DATA is data."""
        stream = b"1 rsp 6 200 OK\n2 rsp 15 500 bad\nthing x\n0 serverclose 0\n3 rsp 0\n"
        for cut in range(1, len(stream)):
            p = FrameParser(1024)
            got = p.feed(stream[:cut]) + p.feed(stream[cut:])
            assert got == [
                Frame(1, "rsp", b"200 OK"),
                Frame(2, "rsp", b"500 bad\nthing x"),
                Frame(0, "serverclose", b""),
                Frame(3, "rsp", b""),
            ], cut

    @pytest.mark.parametrize(
        "bad",
        [
            b"x rsp 1 a\n",
            b"1 r-p 1 a\n",
            b"1 rsp 3 abcd\n",
            b"1 rsp 2x\n",
            b"1" * 60,
            b"1 rsp 5000 " + b"a" * 10,
        ],
    )
    def test_parser_rejects_garbage(self, bad: bytes) -> None:
        """Non-RELP input (bad numbers, commands, trailer, oversized frames) ends the session."""
        with pytest.raises(TransientSinkError, match="RELP protocol error"):
            FrameParser(1024).feed(bad)

    def test_response_and_offers(self) -> None:
        rsp = parse_response(b"200 OK\nrelp_version=0\ncommands=syslog,foo")
        assert (rsp.code, rsp.text, rsp.ok) == (200, "OK", True)
        assert parse_offers(rsp.body) == {"relp_version": "0", "commands": "syslog,foo"}
        assert not parse_response(b"500 error").ok

    async def test_txnr_wraps_to_one(self) -> None:
        """After 999999999 the next transaction number is 1 (0 is reserved for server hints)."""
        rcv = RelpReceiver()
        await rcv.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", rcv.port)
        session = RelpSession(reader, writer, window=4)
        await session.open(b"relp_version=0\ncommands=syslog")
        session._next_txnr = MAX_TXNR
        answers = [await session.submit("syslog", b"m%d" % i) for i in range(2)]
        assert [(await a) is not None for a in answers] == [True, True]
        assert session._next_txnr == 2
        await session.close(2)
        await rcv.stop()


class TestSessionAgainstFake:
    @pytest.fixture
    async def rcv(self) -> RelpReceiver:
        rcv = RelpReceiver()
        await rcv.start()
        yield rcv  # type: ignore[misc]
        await rcv.stop()

    async def test_open_offers(self, rcv: RelpReceiver, ctx: SinkContext) -> None:
        """The open command offers relp_version=0, our software and the syslog command."""
        sink = build(table(rcv.port), ctx)
        await sink.start()
        offers = parse_offers(rcv.offers[0])
        assert offers["relp_version"] == "0" and offers["commands"] == "syslog"
        assert offers["relp_software"].startswith("siem-agent,")
        await sink.aclose()

    async def test_window_bounds_unanswered(
        self, rcv: RelpReceiver, ctx: SinkContext, metrics: AgentMetrics
    ) -> None:
        """With answers held, exactly ``window`` messages are written; the rest wait for room."""
        sink = build(table(rcv.port, window=5, timeout_secs=10), ctx)
        await sink.start()
        rcv.holding = True
        task = asyncio.create_task(sink.send(events(12)))
        await rcv.wait(lambda: len(rcv.received) >= 5)
        await until(lambda: value(metrics.sink_unacked_events, "test") == 5, what="gauge")
        assert value(metrics.sink_unacked_bytes, "test") > 5 * 100
        assert len(rcv.received) == 5 and not task.done()
        rcv.release()
        assert await asyncio.wait_for(task, 10) == SendResult()
        assert ids_of(rcv.messages) == [e.alert["id"] for e in events(12)]
        assert value(metrics.sink_unacked_events, "test") == 0
        await sink.aclose()

    async def test_4xx_is_rejected_500_is_retried(self, rcv: RelpReceiver, ctx: SinkContext) -> None:
        """Per message: 200 delivered, 4xx dead-lettered with the reason, other codes re-sent."""

        def answer(payload: bytes) -> bytes:
            i = int(ids_of([payload])[0][-2:])
            return {1: b"400 message refused", 3: b"500 queue full"}.get(i, b"200 OK")

        rcv.answer = answer  # type: ignore[method-assign]
        sink = build(table(rcv.port), ctx)
        result = await sink.send(events(5))
        assert result.rejected == {1: "RELP server rejected the message: 400 message refused"}
        assert result.retry == [3]
        await sink.aclose()

    async def test_all_500_is_transient(self, rcv: RelpReceiver, ctx: SinkContext) -> None:
        """Nothing delivered and nothing rejected: TransientSinkError naming the server's answer."""
        rcv.answer = lambda payload: b"500 error"  # type: ignore[method-assign]
        sink = build(table(rcv.port), ctx)
        with pytest.raises(TransientSinkError, match="answered 500 error"):
            await sink.send(events(3))
        await sink.aclose()

    async def test_serverclose_resends_only_unanswered(
        self, rcv: RelpReceiver, ctx: SinkContext, metrics: AgentMetrics
    ) -> None:
        """Answered messages stay delivered; unanswered ones go back (retry) and a new session opens."""
        sink = build(table(rcv.port, window=4), ctx)
        await sink.start()
        rcv.hold_after = 3
        evs = events(8)
        task = asyncio.create_task(sink.send(evs))
        await rcv.wait(lambda: len(rcv.received) >= 7)  # 3 answered + a full window held
        rcv.server_close()
        result = await asyncio.wait_for(task, 10)
        assert result == SendResult(retry=[3, 4, 5, 6, 7])
        assert ids_of(rcv.messages) == [e.alert["id"] for e in evs[:3]]
        assert value(metrics.sink_resent, "test") == 4  # written, unanswered; evs[7] was never written
        rcv.hold_after = None
        assert await sink.send([evs[i] for i in result.retry]) == SendResult()
        assert ids_of(rcv.messages) == [e.alert["id"] for e in evs]
        assert rcv.sessions == 2 and value(metrics.sink_reconnects, "test") == 1
        await sink.aclose()

    async def test_no_answer_is_bounded_by_timeout(self, rcv: RelpReceiver, ctx: SinkContext) -> None:
        """A server that never answers: TransientSinkError after timeout_secs, session dropped."""
        sink = build(table(rcv.port, timeout_secs=0.3), ctx)
        await sink.start()
        rcv.holding = True
        with pytest.raises(TransientSinkError, match="no rsp"):
            await sink.send(events(3))
        await rcv.wait(lambda: not rcv.conns)
        await sink.aclose()

    async def test_refused_connection_is_transient(self, ctx: SinkContext) -> None:
        rcv = RelpReceiver()
        port = await rcv.start()
        await rcv.stop()
        sink = build(table(port), ctx)
        with pytest.raises(TransientSinkError, match="connect"):
            await sink.start()
        await sink.aclose()


def tls_table(rcv: Receiver) -> dict[str, object]:
    cert, key = rcv.client_cert
    return {
        "ca_file": str(rcv.ca_file),
        "server_name": "localhost",
        "cert_file": str(cert),
        "key_file": str(key),
    }


@pytest.mark.parametrize("port", ["relp", "relp_tls"])
async def test_rsyslog_gets_every_message(port: str, rsyslog: Receiver, ctx: SinkContext) -> None:
    """N messages into rsyslog's imrelp (plain and mutual TLS) -> exactly N records, in order."""
    extra = {"tls": tls_table(rsyslog)} if port == "relp_tls" else {}
    sink = build(table(rsyslog.ports[port], window=16, **extra), ctx)
    since = rsyslog.mark()
    evs = events(200, start=500, title=f"relp-{port}")
    try:
        result = await sink.send(evs)
    finally:
        await sink.aclose()
    assert not result.rejected and not result.retry
    records = [r for r in rsyslog.records()[since:] if f"relp-{port}" in r["msg"]]
    assert [r["inputname"] for r in records] == ["imrelp"] * len(records)
    assert ids_of([r["msg"].encode() for r in records]) == [e.alert["id"] for e in evs]


@pytest.fixture
def own_rsyslog(tmp_path: Path) -> Iterator[Receiver]:
    """A private rsyslog this test may kill (the session one is shared)."""
    rcv = start_rsyslog(tmp_path / "rsyslog")
    try:
        yield rcv
    finally:
        rcv.stop()


KILLS = 3
WINDOW = 32


@pytest.mark.receivers
@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
async def test_sigkill_mid_stream_loses_nothing(
    tls: bool, own_rsyslog: Receiver, ctx: SinkContext, metrics: AgentMetrics, tmp_path: Path
) -> None:
    """Through the real runner: SIGKILL rsyslog three times mid-stream (each time with a full window
    of unanswered messages in its socket buffer) and restart it.

    Asserted: every alert is in rsyslog's output (zero lost: imrelp answers only after the record is
    written, see rsyslog.conf.in), every batch was committed, and there are at most
    ``KILLS * WINDOW`` duplicates (a killed session can only have processed ``window`` unanswered
    messages; answered ones are never re-sent).
    """
    rcv = own_rsyslog
    port = rcv.ports["relp_tls" if tls else "relp"]
    extra = {"tls": tls_table(rcv)} if tls else {}
    t = table(port, window=WINDOW, batch={"max_events": 100, "timeout_secs": 0}, **extra)
    sink = build(t, ctx)
    harness = RunnerHarness(sink, t, metrics, tmp_path)
    alerts = [alert(i, title="k" * 300) for i in range(3000)]
    feeder = asyncio.create_task(harness.feed(alerts, per_batch=50))
    run = asyncio.create_task(harness.runner.run())
    for k in range(KILLS):
        threshold = (k + 1) * len(alerts) // (KILLS + 1)
        await until(lambda n=threshold: len(delivered_ids(rcv)) >= n, timeout=30, what=f"{threshold} records")
        # Freeze it first so that a full window is written and unanswered when it dies: those
        # messages sit unread in its socket buffer and must be re-sent, not counted as delivered.
        rcv.freeze()
        await until(
            lambda: value(metrics.sink_unacked_events, "test") == WINDOW,
            timeout=10,
            what="a full window in flight",
        )
        await asyncio.to_thread(rcv.kill)
        await asyncio.to_thread(rcv.restart)
    await asyncio.wait_for(asyncio.gather(feeder, run), timeout=60)
    await sink.aclose()
    counts = delivered_ids(rcv)
    assert set(counts) == {a["id"] for a in alerts}, "lost alerts"
    duplicates = sum(counts.values()) - len(counts)
    assert duplicates <= KILLS * WINDOW, duplicates
    assert len(harness.commits) == len(alerts) // 50
    assert value(metrics.sink_reconnects, "test") >= KILLS


def test_example_config_selects_relp(monkeypatch: pytest.MonkeyPatch) -> None:
    """config/syslog-relp.toml loads and selects the RELP sink with mutual TLS."""
    monkeypatch.setenv("GRAPH_CLIENT_SECRET", "value-of-GRAPH_CLIENT_SECRET")
    settings = load_settings(Path(__file__).resolve().parents[2] / "config" / "syslog-relp.toml")
    (sink,) = settings.sinks
    assert isinstance(sink, RelpSinkConfig)
    assert sink.window == 128 and sink.tls is not None and sink.tls.cert_file is not None
    assert SINKS[sink.type] is RelpSink
