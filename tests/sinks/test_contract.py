"""The sink contract, for every registered sink type (Vector-style compliance suite).

* ``send`` returns only once the receiver has the batch (as far as its protocol can tell);
* a receiver that fails transiently makes ``send`` raise ``TransientSinkError``;
* a receiver that rejects the data yields ``PermanentSinkError`` or ``SendResult.rejected``;
* a shutdown deadline cancels ``send`` cleanly: no task, socket or session left behind;
* ``aclose`` twice is safe;
* ``healthcheck`` passes while the receiver answers and raises a ``SinkError`` once it is gone.
"""

from __future__ import annotations

import asyncio
import gc
import io
from pathlib import Path
from typing import Any

import orjson
import pytest

from agent.errors import PermanentSinkError, SinkError, TransientSinkError
from agent.model import Event
from agent.sinks import SINKS, Reopenable, Sink, SinkContext
from agent.sinks.stdout import StdoutSink
from agent.sinks.tcp import unacked_bytes
from tests.fakes import hec as H
from tests.fakes import logs_ingestion as L
from tests.fakes.hec import FakeHec
from tests.fakes.http import NdjsonReceiver
from tests.fakes.logs_ingestion import FakeLogsIngestion
from tests.fakes.osmem import Osmem
from tests.fakes.relp import RelpReceiver
from tests.fakes.syslog import TcpReceiver, UdpReceiver
from tests.sinks.conftest import alert, build, config, events, ids_of
from tests.support.wait import until


class Harness:
    """A sink wired to a receiver the test controls."""

    can_hang = True  # the receiver can hold a send open (so cancellation hits it mid-flight)
    can_reject = True  # the receiver can refuse the data itself
    can_vanish = True  # the receiver can go away in a way a health check can see (a closed port)
    hang_payload_bytes = 1000  # TCP needs more than the receiver's window to be held

    def __init__(self, tmp_path: Path, ctx: SinkContext) -> None:
        self.tmp = tmp_path
        self.ctx = ctx
        self.sink: Sink

    async def setup(self) -> None: ...
    async def teardown(self) -> None: ...
    async def received(self, n: int) -> list[str]:
        """Alert ids the receiver holds, once it holds at least ``n`` (bounded wait for socket sinks)."""
        raise NotImplementedError

    async def fail_transient(self) -> None: ...
    async def vanish(self) -> None:
        """Take the receiver away: its port closed (or, for a file, its directory gone)."""
        await self.fail_transient()

    def reject(self) -> None: ...
    def hang(self) -> None: ...
    def in_flight(self) -> bool:
        """True once a held send has reached the receiver (only for ``can_hang``)."""
        raise NotImplementedError


class StdoutHarness(Harness):
    can_hang = can_reject = can_vanish = False

    class Broken(io.BytesIO):
        def write(self, data: Any) -> int:
            raise OSError(32, "Broken pipe")

    async def setup(self) -> None:
        self.stream = io.BytesIO()
        self.sink = StdoutSink(config({"type": "stdout"}), self.ctx, stream=self.stream)

    async def received(self, n: int) -> list[str]:
        return ids_of(self.stream.getvalue().splitlines())

    async def fail_transient(self) -> None:
        self.sink._stream = self.Broken()  # type: ignore[attr-defined]


class FileHarness(Harness):
    can_hang = can_reject = False

    async def setup(self) -> None:
        self.path = self.tmp / "out" / "alerts.jsonl"
        self.path.parent.mkdir()
        self.sink = build({"type": "file", "path": str(self.path), "codec": {"type": "json"}}, self.ctx)

    async def received(self, n: int) -> list[str]:
        return ids_of(self.path.read_bytes().splitlines())

    async def fail_transient(self) -> None:
        self.path.unlink()
        self.path.parent.rmdir()
        self.sink.reopen()

    async def vanish(self) -> None:
        self.path.parent.rmdir()  # nothing written yet: the file does not exist either


class TcpHarness(Harness):
    can_reject = False
    hang_payload_bytes = 2_000_000

    async def setup(self) -> None:
        self.rcv = TcpReceiver(rcvbuf=4096)
        await self.rcv.start()
        self.sink = build(
            {
                "type": "tcp",
                "host": "127.0.0.1",
                "port": self.rcv.port,
                "codec": {"type": "json"},
                "connect_timeout_secs": 2,
            },
            self.ctx,
        )

    async def teardown(self) -> None:
        await self.rcv.stop()

    async def received(self, n: int) -> list[str]:
        await self.rcv.wait_messages(n)
        return ids_of(self.rcv.messages)

    async def fail_transient(self) -> None:
        await self.rcv.stop()

    def hang(self) -> None:
        self.rcv.pause()

    def in_flight(self) -> bool:
        writer = self.sink._writer  # type: ignore[attr-defined]
        return writer is not None and unacked_bytes(writer.transport.get_extra_info("socket")) > 0


class UdpHarness(Harness):
    can_hang = can_reject = False
    can_vanish = False  # a datagram is never answered: a closed port shows only as a later ICMP error

    async def setup(self) -> None:
        self.rcv = UdpReceiver()
        await self.rcv.start()
        self.sink = build(
            {
                "type": "udp",
                "host": "127.0.0.1",
                "port": self.rcv.port,
                "codec": {"type": "json"},
                "max_datagram_bytes": 65507,
            },
            self.ctx,
        )

    async def teardown(self) -> None:
        self.rcv.stop()

    async def received(self, n: int) -> list[str]:
        await self.rcv.wait_datagrams(n)
        return ids_of(self.rcv.datagrams)

    async def fail_transient(self) -> None:
        self.rcv.stop()  # ICMP port unreachable: reported on a following send
        await asyncio.sleep(0)  # the transport closes its socket on the next loop iteration


class HecHarness(Harness):
    async def setup(self) -> None:
        self.hec = FakeHec()
        await self.hec.start()
        self.sink = build(
            {
                "type": "splunk_hec",
                "url": self.hec.url,
                "token": H.TOKEN,
                "codec": {"type": "json"},
                "ack_poll_interval_secs": 0.01,
                "ack_timeout_secs": 600,
            },
            self.ctx,
        )

    async def teardown(self) -> None:
        await self.hec.stop()

    async def received(self, n: int) -> list[str]:
        return self.hec.indexed_ids()

    async def fail_transient(self) -> None:
        self.hec.faults.append(H.BUSY)

    async def vanish(self) -> None:
        await self.hec.stop()

    def reject(self) -> None:
        self.hec.reject = lambda env: 6

    def hang(self) -> None:
        self.hec.ack_after_polls = None
        self.seen = len(self.hec.requests)

    def in_flight(self) -> bool:
        return len(self.hec.requests) >= self.seen + 3  # the event POST and two ack polls


class ElasticsearchHarness(Harness):
    async def setup(self) -> None:
        self.es = Osmem(self.tmp)
        self.es.start()
        self.sink = build(
            {"type": "elasticsearch", "url": self.es.url, "index": "contract", "timeout_secs": 600}, self.ctx
        )

    async def teardown(self) -> None:
        if self.es.proc is not None:
            self.es.resume()
        self.es.kill()

    async def received(self, n: int) -> list[str]:
        return self.es.ids("contract")

    async def fail_transient(self) -> None:
        self.es.kill()

    def reject(self) -> None:
        self.es.request("PUT", "/contract", {"mappings": {"properties": {"title": {"type": "long"}}}})

    def hang(self) -> None:
        self.es.pause()

    def in_flight(self) -> bool:
        return self.es.has_unread_request()


class LogsIngestionHarness(Harness):
    async def setup(self) -> None:
        self.li = FakeLogsIngestion(self.tmp / "tls")
        await self.li.start()
        self.sink = build(self.li.sink_table(), self.ctx)

    async def teardown(self) -> None:
        await self.li.stop()

    async def received(self, n: int) -> list[str]:
        return [r["id"] for r in self.li.rows]

    async def fail_transient(self) -> None:
        self.li.faults.append(L.UNAVAILABLE)

    async def vanish(self) -> None:
        await self.li.stop()

    def reject(self) -> None:
        self.li.faults.append(L.INVALID)

    def hang(self) -> None:
        self.li.hold.clear()

    def in_flight(self) -> bool:
        return self.li.waiting.is_set()


class HttpHarness(Harness):
    async def setup(self) -> None:
        self.rcv = NdjsonReceiver()
        await self.rcv.start()
        self.sink = build(self.rcv.table(timeout_secs=600), self.ctx)

    async def teardown(self) -> None:
        await self.rcv.stop()

    async def received(self, n: int) -> list[str]:
        return ids_of(self.rcv.lines)

    async def fail_transient(self) -> None:
        self.rcv.statuses.append(503)

    async def vanish(self) -> None:
        await self.rcv.stop()

    def reject(self) -> None:
        self.rcv.statuses.append(400)

    def hang(self) -> None:
        self.rcv.hold.clear()
        self.rcv.waiting.clear()

    def in_flight(self) -> bool:
        return self.rcv.waiting.is_set()


class RelpHarness(Harness):
    """RELP against the fake server (rsyslog's imrelp cannot be told to reject or hold)."""

    async def setup(self) -> None:
        self.rcv = RelpReceiver()
        await self.rcv.start()
        self.sink = build(
            {"type": "relp", "host": "127.0.0.1", "port": self.rcv.port, "codec": {"type": "json"},
             "connect_timeout_secs": 2},
            self.ctx,
        )  # fmt: skip

    async def teardown(self) -> None:
        await self.rcv.stop()

    async def received(self, n: int) -> list[str]:
        await self.rcv.wait(lambda: len(self.rcv.messages) >= n)
        return ids_of(self.rcv.messages)

    async def fail_transient(self) -> None:
        await self.rcv.crash()

    async def vanish(self) -> None:
        await self.rcv.stop()

    def reject(self) -> None:
        self.rcv.answer = lambda payload: b"400 refused"  # type: ignore[method-assign]

    def hang(self) -> None:
        self.rcv.holding = True
        self.rcv.received.clear()

    def in_flight(self) -> bool:
        return bool(self.rcv.received)


HARNESSES: dict[str, type[Harness]] = {
    "stdout": StdoutHarness,
    "file": FileHarness,
    "tcp": TcpHarness,
    "relp": RelpHarness,
    "udp": UdpHarness,
    "splunk_hec": HecHarness,
    "elasticsearch": ElasticsearchHarness,
    "logs_ingestion": LogsIngestionHarness,
    "http": HttpHarness,
}
REJECTING = [k for k, h in HARNESSES.items() if h.can_reject]
VANISHING = [k for k, h in HARNESSES.items() if h.can_vanish]
HANGING = [k for k, h in HARNESSES.items() if h.can_hang]


def test_every_registered_sink_is_covered() -> None:
    """The suite covers exactly the registry; every receiver-backed HTTP sink has a rejection case."""
    assert set(HARNESSES) == set(SINKS)
    assert set(REJECTING) == {"splunk_hec", "elasticsearch", "logs_ingestion", "http", "relp"}
    assert set(HANGING) == set(SINKS) - {"stdout", "file", "udp"}
    assert set(VANISHING) == set(SINKS) - {"stdout", "udp"}


def test_only_file_sinks_reopen() -> None:
    """``reopen`` (SIGHUP) is an optional capability; of the registered sinks only ``file`` has it."""
    assert {k for k, cls in SINKS.items() if issubclass(cls, Reopenable)} == {"file"}  # type: ignore[arg-type]


@pytest.fixture(params=sorted(HARNESSES))
async def harness(request: pytest.FixtureRequest, tmp_path: Path, ctx: SinkContext):  # type: ignore[no-untyped-def]
    h = HARNESSES[request.param](tmp_path, ctx)
    await h.setup()
    try:
        yield h
    finally:
        await h.sink.aclose()
        await h.teardown()


async def test_acknowledges_after_receiver_has_data(harness: Harness) -> None:
    """After ``send`` returns, the receiver holds every event of the batch."""
    await harness.sink.start()
    evs = events(5)
    result = await harness.sink.send(evs)
    assert not result.rejected and not result.retry
    assert sorted(await harness.received(5)) == sorted(e.alert["id"] for e in evs)


async def test_transient_failure_raises_transient(harness: Harness) -> None:
    """A receiver that fails transiently gets ``TransientSinkError`` (bounded attempts for UDP's ICMP)."""
    await harness.sink.start()
    await harness.sink.send(events(1))
    await harness.fail_transient()
    with pytest.raises(TransientSinkError):
        for _ in range(20):
            await harness.sink.send(events(2, start=1))


@pytest.mark.parametrize("kind", REJECTING)
async def test_permanent_rejection(kind: str, tmp_path: Path, ctx: SinkContext) -> None:
    """Data the receiver refuses is a ``PermanentSinkError`` or rejected per event."""
    h = HARNESSES[kind](tmp_path, ctx)
    await h.setup()
    try:
        h.reject()
        try:
            result = await h.sink.send(events(2))
        except PermanentSinkError:
            return
        assert result.rejected, "neither PermanentSinkError nor rejected events"
    finally:
        await h.sink.aclose()
        await h.teardown()


async def test_cancellation_leaves_nothing_behind(harness: Harness) -> None:
    """A shutdown deadline cancels a send in flight; then no task or socket is left over."""
    await harness.sink.start()
    await harness.sink.send(events(1))
    harness.hang()
    big = alert(7, title="x" * harness.hang_payload_bytes)
    task = asyncio.create_task(harness.sink.send([Event(big, orjson.dumps(big))]))
    if harness.can_hang:
        await until(lambda: harness.in_flight() or task.done(), timeout=10, what="send in flight")
        assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await harness.sink.aclose()
    await harness.sink.aclose()
    assert asyncio.all_tasks() == {asyncio.current_task()} | _fixture_tasks()
    gc.collect()  # an unclosed socket/transport/session would surface as ResourceWarning (an error)


def _fixture_tasks() -> set[asyncio.Task[Any]]:
    """Tasks of the fake receivers' aiohttp servers (held requests), which are not the sink's."""
    return {
        t
        for t in asyncio.all_tasks()
        if t is not asyncio.current_task() and t.get_coro().__qualname__.startswith("RequestHandler.")  # type: ignore[union-attr]
    }


async def test_aclose_twice_is_safe(harness: Harness) -> None:
    """``aclose`` after use, twice, and before ``start``, never raises."""
    await harness.sink.aclose()
    await harness.sink.start()
    await harness.sink.send(events(1))
    await harness.sink.aclose()
    await harness.sink.aclose()


async def test_healthcheck_passes_while_the_receiver_answers(harness: Harness) -> None:
    """``healthcheck`` before any send succeeds, and a send after it still delivers."""
    await harness.sink.healthcheck()
    await harness.sink.send(events(1))
    assert await harness.received(1) == [events(1)[0].alert["id"]]


@pytest.mark.parametrize("kind", VANISHING)
async def test_healthcheck_fails_when_the_receiver_is_gone(
    kind: str, tmp_path: Path, ctx: SinkContext
) -> None:
    """With the receiver's port closed (a file sink: its directory gone), ``healthcheck`` raises a
    ``SinkError`` that names the peer, not "ok"."""
    h = HARNESSES[kind](tmp_path, ctx)
    await h.setup()
    try:
        await h.vanish()
        with pytest.raises(SinkError) as info:
            await h.sink.healthcheck()
        assert str(info.value)
    finally:
        await h.sink.aclose()
        await h.teardown()
