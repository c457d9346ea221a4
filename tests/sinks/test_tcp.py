"""TCP/TLS sink against loopback receivers we control (framing, acknowledgement, TLS, crash/restart)."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from pathlib import Path

import pytest

from agent.errors import ConfigError, TransientSinkError
from agent.metrics import AgentMetrics
from agent.simulator.tls import make_tls
from agent.sinks import SendResult, SinkContext
from agent.sinks.tcp import PeerLiveness, TcpInfo, tcp_info, tcp_state
from tests.fakes.syslog import TcpReceiver
from tests.fakes.tls import make_client_cert
from tests.sinks.conftest import RunnerHarness, alert, build, events, ids_of
from tests.support.wait import until


def table(port: int, **over: object) -> dict[str, object]:
    return {"type": "tcp", "host": "127.0.0.1", "port": port, "codec": {"type": "json"}, **over}


class TestFraming:
    async def test_octet_counting_is_default(self, tcp_receiver: TcpReceiver, ctx: SinkContext) -> None:
        """Payloads with embedded LF survive octet counting intact."""
        sink = build(table(tcp_receiver.port), ctx)
        await sink.start()
        evs = events(3)
        evs.append(type(evs[0])(alert(9), b"line one\nline two"))
        await sink.send(evs)
        await tcp_receiver.wait_messages(4)
        assert tcp_receiver.messages[-1] == b"line one\nline two"
        assert ids_of(tcp_receiver.messages[:3]) == [e.alert["id"] for e in evs[:3]]
        await sink.aclose()

    async def test_newline_framing(self, tcp_receiver: TcpReceiver, ctx: SinkContext) -> None:
        """``framing = "newline"`` writes payload + LF."""
        sink = build(table(tcp_receiver.port, framing="newline"), ctx)
        await sink.send(events(5))
        await tcp_receiver.wait_messages(5)
        assert len(ids_of(tcp_receiver.messages)) == 5
        await sink.aclose()


class TestAcknowledgement:
    async def test_unread_bytes_are_not_acknowledged_and_a_stall_is_waited_out(
        self, ctx: SinkContext, metrics: AgentMetrics, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A receiver whose window is full never gets a batch acknowledged; the send keeps waiting on
        the same connection past ``timeout_secs`` (the peer's TCP answers its window probes), and
        completes once the receiver reads again: one connection, every message exactly once."""
        rcv = TcpReceiver(rcvbuf=4096)
        await rcv.start()
        rcv.pause()
        sink = build(table(rcv.port, timeout_secs=0.3), ctx)
        big = events(300, title="x" * 10_000)
        task = asyncio.create_task(sink.send(big))
        stalled_at = time.monotonic()
        # The subject is a stall's duration: let it outlast the timeout three times over.
        await until(lambda: time.monotonic() - stalled_at > 3 * 0.3 or task.done(), 10, "3 x timeout")
        assert not task.done() and metrics.sink_unacked_bytes.labels("test")._value.get() > 0
        assert any("Receiver is not reading" in r.getMessage() for r in caplog.records)
        rcv.resume()
        assert await asyncio.wait_for(task, 20) == SendResult()
        await rcv.wait_messages(300)
        assert sorted(ids_of(rcv.messages)) == sorted(e.alert["id"] for e in big)
        assert rcv.accepted == 1
        assert metrics.sink_connections.labels("test", "error")._value.get() == 0
        await sink.aclose()
        await rcv.stop()

    async def test_stall_longer_than_the_timeout_makes_no_duplicates_through_the_runner(
        self, ctx: SinkContext, metrics: AgentMetrics, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Issue #15: the receiver stops reading mid-stream for longer than the sink's timeout, then
        resumes: zero duplicates, nothing lost, no reconnect."""
        rcv = TcpReceiver(rcvbuf=4096)
        await rcv.start()
        t = table(rcv.port, timeout_secs=0.3, batch={"max_events": 100, "timeout_secs": 0})
        sink = build(t, ctx)
        harness = RunnerHarness(sink, t, metrics, tmp_path)
        alerts = [alert(i, title="s" * 2000) for i in range(1500)]
        feeder = asyncio.create_task(harness.feed(alerts, per_batch=50))
        run = asyncio.create_task(harness.runner.run())
        await rcv.wait_messages(200, timeout=30)
        rcv.pause()
        unacked = metrics.sink_unacked_bytes.labels("test")
        await until(lambda: unacked._value.get() > 0, 10, "bytes waiting for the paused receiver")
        stalled_at = time.monotonic()
        await until(lambda: time.monotonic() - stalled_at > 3 * 0.3, 10, "the stall to outlast the timeout")
        rcv.resume()
        await asyncio.wait_for(asyncio.gather(feeder, run), timeout=60)
        got = ids_of(rcv.messages)
        assert len(got) == len(set(got)) == len(alerts), f"{len(got) - len(set(got))} duplicates"
        assert rcv.accepted == 1 and metrics.sink_resent.labels("test")._value.get() == 0
        assert any("Receiver is not reading" in r.getMessage() for r in caplog.records)
        await sink.aclose()
        await rcv.stop()

    async def test_reset_connection_is_transient_and_reconnects(
        self, tcp_receiver: TcpReceiver, ctx: SinkContext, metrics: AgentMetrics
    ) -> None:
        """After the receiver resets idle connections, the next send reconnects first."""
        sink = build(table(tcp_receiver.port), ctx)
        await sink.send(events(1))
        await tcp_receiver.crash()
        await tcp_receiver.start()
        for _ in range(3):
            try:
                await sink.send(events(1, start=1))
                break
            except TransientSinkError:
                continue
        await tcp_receiver.wait_messages(2)
        assert metrics.sink_connections.labels("test", "connect")._value.get() >= 2
        await sink.aclose()

    async def test_connection_refused_is_transient(self, ctx: SinkContext) -> None:
        """Nothing listening: start and send raise TransientSinkError."""
        rcv = TcpReceiver()
        port = await rcv.start()
        await rcv.stop()
        sink = build(table(port), ctx)
        with pytest.raises(TransientSinkError, match="connect"):
            await sink.start()
        with pytest.raises(TransientSinkError):
            await sink.send(events(1))
        await sink.aclose()


class TestReplayWindow:
    async def test_peer_reset_resends_only_the_unacknowledged_suffix(
        self, ctx: SinkContext, metrics: AgentMetrics
    ) -> None:
        """Receiver stops reading, its TCP acknowledges part of the batch, then it resets: the sink
        hands back a suffix (possibly empty: draining its buffer before the reset can let the rest
        through), and every message before it is in the receiver."""
        rcv = TcpReceiver(rcvbuf=4096)
        await rcv.start()
        sink = build(table(rcv.port, timeout_secs=20), ctx)
        await sink.start()
        rcv.pause()
        evs = events(400, title="p" * 500)
        task = asyncio.create_task(sink.send(evs))
        unacked = metrics.sink_unacked_events.labels("test")
        await until(lambda: 0 < unacked._value.get() < len(evs), what="a partly acknowledged batch")
        assert metrics.sink_unacked_bytes.labels("test")._value.get() > 0
        await rcv.crash()  # reads what its TCP acknowledged, then resets
        result = await asyncio.wait_for(task, 10)
        first = result.retry[0] if result.retry else len(evs)
        assert result.retry == list(range(first, len(evs)))
        assert set(ids_of(rcv.messages)) >= {e.alert["id"] for e in evs[:first]}
        assert metrics.sink_resent.labels("test")._value.get() == len(evs) - first
        assert unacked._value.get() == 0
        await sink.aclose()
        await rcv.stop()


class TestCrashRestart:
    async def test_receiver_crash_mid_stream_loses_nothing(
        self, ctx: SinkContext, metrics: AgentMetrics, tmp_path: Path
    ) -> None:
        """Through the real runner: crash and restart the receiver twice mid-stream; every alert arrives."""
        rcv = TcpReceiver()
        await rcv.start()
        t = table(rcv.port, batch={"max_events": 50, "timeout_secs": 0})
        sink = build(t, ctx)
        harness = RunnerHarness(sink, t, metrics, tmp_path)
        alerts = [alert(i, title="t" * 2000) for i in range(3000)]
        feeder = asyncio.create_task(harness.feed(alerts, per_batch=25))
        run = asyncio.create_task(harness.runner.run())
        for threshold in (500, 1500):
            await rcv.wait_messages(threshold, timeout=30)
            await rcv.crash()
            await rcv.start()
        await asyncio.wait_for(asyncio.gather(feeder, run), timeout=60)
        got = set(ids_of(rcv.messages))
        assert got == {a["id"] for a in alerts}
        assert len(harness.commits) == len(alerts) // 25
        await sink.aclose()
        await rcv.stop()


class TestTls:
    @pytest.fixture
    def tls(self, tmp_path: Path):  # type: ignore[no-untyped-def]
        return make_tls(tmp_path / "tls")

    def server_ctx(self, tls, client_ca: Path | None = None, tls12: bool = False) -> ssl.SSLContext:  # type: ignore[no-untyped-def]
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(tls.cert, tls.key)
        if tls12:
            # TLS 1.3 reports a refused client certificate only after the handshake (see tcp.py).
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        if client_ca is not None:
            ctx.load_verify_locations(client_ca)
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    async def test_verified_tls(self, tls, ctx: SinkContext) -> None:  # type: ignore[no-untyped-def]
        """With the CA configured the handshake verifies and messages arrive."""
        rcv = TcpReceiver(self.server_ctx(tls))
        await rcv.start()
        sink = build(table(rcv.port, tls={"ca_file": str(tls.ca_cert), "server_name": "localhost"}), ctx)
        await sink.start()
        await sink.send(events(3))
        await rcv.wait_messages(3)
        await sink.aclose()
        await rcv.stop()

    async def test_unknown_ca_is_refused(self, tls, ctx: SinkContext) -> None:  # type: ignore[no-untyped-def]
        """Verification is on by default: the system store does not trust the throwaway CA."""
        rcv = TcpReceiver(self.server_ctx(tls))
        await rcv.start()
        sink = build(table(rcv.port, tls={}), ctx)
        with pytest.raises(TransientSinkError, match="certificate verification failed"):
            await sink.start()
        await sink.aclose()
        await rcv.stop()

    async def test_wrong_server_name_is_refused(self, tls, ctx: SinkContext) -> None:  # type: ignore[no-untyped-def]
        """SNI/hostname checking uses ``server_name``."""
        rcv = TcpReceiver(self.server_ctx(tls))
        await rcv.start()
        sink = build(table(rcv.port, tls={"ca_file": str(tls.ca_cert), "server_name": "siem.example"}), ctx)
        with pytest.raises(TransientSinkError, match="certificate"):
            await sink.start()
        await sink.aclose()
        await rcv.stop()

    async def test_mutual_tls(self, tls, tmp_path: Path, ctx: SinkContext) -> None:  # type: ignore[no-untyped-def]
        """A client certificate is presented when configured; without one the handshake fails."""
        client = make_client_cert(tmp_path / "client")
        strict = TcpReceiver(self.server_ctx(tls, client_ca=client.ca_cert, tls12=True))
        await strict.start()
        base = {"ca_file": str(tls.ca_cert)}
        without = build(table(strict.port, tls=base), ctx)
        with pytest.raises(TransientSinkError, match="connect"):
            await without.start()
        await without.aclose()
        await strict.stop()
        rcv = TcpReceiver(self.server_ctx(tls, client_ca=client.ca_cert))
        await rcv.start()
        sink = build(
            table(rcv.port, tls={**base, "cert_file": str(client.cert), "key_file": str(client.key)}), ctx
        )
        await sink.send(events(2))
        await rcv.wait_messages(2)
        await sink.aclose()
        await rcv.stop()

    def test_unreadable_key_is_a_config_error(self, ctx: SinkContext, tmp_path: Path) -> None:
        """Missing key material fails at build time, naming the sink."""
        with pytest.raises(ConfigError, match=r"sinks\.test\.tls"):
            build(
                table(1, tls={"cert_file": str(tmp_path / "nope.pem"), "key_file": str(tmp_path / "k")}), ctx
            )


class TestPeerLiveness:
    """What counts as a dead peer, from ``TCP_INFO`` samples (a dead host cannot be made on loopback)."""

    class Clock:
        def __init__(self) -> None:
            self.t = 0.0

        def __call__(self) -> float:
            return self.t

    def test_a_stalled_peer_answering_its_probes_is_alive_however_long(self) -> None:
        """Window probes come and go answered (probes back to 0): never dead."""
        clock = self.Clock()
        live = PeerLiveness(30, clock)
        for step in range(100):
            clock.t = step * 10.0
            assert live.dead(TcpInfo(1, 0, 1 if step % 2 else 0)) is None

    def test_unanswered_retransmissions_for_the_timeout_are_a_dead_peer(self) -> None:
        """Retransmissions unanswered for timeout_secs: dead, with the counts in the reason."""
        clock = self.Clock()
        live = PeerLiveness(30, clock)
        assert live.dead(TcpInfo(1, 1, 0)) is None
        clock.t = 29.0
        assert live.dead(TcpInfo(1, 4, 0)) is None
        clock.t = 31.0
        reason = live.dead(TcpInfo(1, 5, 0))
        assert reason is not None and "not answered for 31s" in reason and "5 retransmissions" in reason

    def test_unanswered_probes_are_a_dead_peer_and_an_answer_resets(self) -> None:
        """Probes unanswered count too; any answer starts the clock again."""
        clock = self.Clock()
        live = PeerLiveness(5, clock)
        assert live.dead(TcpInfo(1, 0, 2)) is None
        clock.t = 4.0
        assert live.dead(TcpInfo(1, 0, 0)) is None
        clock.t = 8.0
        assert live.dead(TcpInfo(1, 0, 1)) is None
        clock.t = 14.0
        assert live.dead(TcpInfo(1, 0, 3)) is not None

    def test_tcp_info_reads_a_real_socket(self) -> None:
        """The parser reads the kernel's struct: an established loopback connection, nothing unanswered."""
        server = socket.create_server(("127.0.0.1", 0))
        client = socket.create_connection(server.getsockname())
        peer, _ = server.accept()
        try:
            assert tcp_info(client) == TcpInfo(1, 0, 0)
            assert tcp_state(client) == 1  # read through tcp_info: one parser of the struct
        finally:
            for s in (client, peer, server):
                s.close()
