"""Splunk HEC sink against the in-repo fake collector (tests/fakes/hec.py; Splunk's documented codes)."""

from __future__ import annotations

import logging

import orjson
import pytest

from agent.clock import SystemClock
from agent.errors import PermanentSinkError, TransientSinkError
from agent.retry import parse_retry_after
from agent.sinks import SinkContext
from agent.sinks.http.splunk_hec import SplunkHecSink, default_sourcetype, epoch_seconds
from tests.fakes import hec as H
from tests.fakes.hec import FakeHec
from tests.sinks.conftest import build, config, events


def table(hec: FakeHec, **over: object) -> dict[str, object]:
    return {
        "type": "splunk_hec",
        "url": hec.url,
        "token": H.TOKEN,
        "ack_poll_interval_secs": 0.01,
        "codec": {"type": "json"},
        **over,
    }


class TestDelivery:
    async def test_envelopes_and_indexer_ack(self, fake_hec: FakeHec, ctx: SinkContext) -> None:
        """Envelopes carry time/host/source/sourcetype/index/fields; send returns after the ack is true."""
        fake_hec.ack_after_polls = 3
        sink = build(table(fake_hec, index="security", host="agent-1", fields={"tenant": "contoso"}), ctx)
        await sink.start()
        evs = events(3)
        await sink.send(evs)
        assert fake_hec.indexed_ids() == [e.alert["id"] for e in evs]
        env = fake_hec.indexed[0]
        assert env["event"] == evs[0].alert  # a JSON codec embeds the object, not a string
        assert env["time"] == pytest.approx(epoch_seconds("2026-03-01T10:00:00.1234567Z"))
        assert (env["host"], env["index"], env["fields"]) == ("agent-1", "security", {"tenant": "contoso"})
        assert env["sourcetype"] == "ms365:defender:incident:alerts"  # json: Splunk_TA_MS_Security's
        channels = {r.get("X-Splunk-Request-Channel") for r in fake_hec.requests}
        assert len(channels) == 1 and None not in channels
        assert all(r.get("Content-Encoding") == "gzip" for r in fake_hec.requests)
        await sink.aclose()
        await sink.aclose()

    async def test_ack_never_true_is_transient(self, fake_hec: FakeHec, ctx: SinkContext) -> None:
        """No indexer ack within ``ack_timeout_secs``: the batch is not delivered (re-sent by the runner)."""
        fake_hec.ack_after_polls = None
        sink = build(table(fake_hec, ack_timeout_secs=0.2), ctx)
        with pytest.raises(TransientSinkError, match="acknowledge"):
            await sink.send(events(2))
        assert fake_hec.indexed == []
        await sink.aclose()

    async def test_ack_disabled_on_token(self, fake_hec: FakeHec, ctx: SinkContext) -> None:
        """A 200 without ackId counts as delivered."""
        fake_hec.ack_enabled = False
        sink = build(table(fake_hec), ctx)
        await sink.send(events(2))
        assert len(fake_hec.indexed) == 2
        await sink.aclose()

    async def test_cef_codec_sends_string_events(self, fake_hec: FakeHec, ctx: SinkContext) -> None:
        """A non-JSON codec's message goes into ``event`` as a string."""
        sink = build(table(fake_hec, codec={"type": "cef"}, compression="none"), ctx)
        assert isinstance(sink, SplunkHecSink)
        ev = events(1)[0]
        await sink.send([type(ev)(ev.alert, b"CEF:0|Microsoft|Graph Security|x|y|z|9|")])
        assert fake_hec.indexed[0]["event"] == "CEF:0|Microsoft|Graph Security|x|y|z|9|"
        assert fake_hec.indexed[0]["sourcetype"] == "microsoft:graph:security:alert:cef"
        await sink.aclose()

    @pytest.mark.parametrize(
        ("codec", "sourcetype"),
        [
            ({"type": "syslog5424", "msg": {"type": "cef"}}, "microsoft:graph:security:alert:cef"),
            ({"type": "leef"}, "microsoft:graph:security:alert"),
            ({"type": "ecs"}, "microsoft:graph:security:alert"),
        ],
    )
    def test_default_sourcetype_by_codec(self, codec: dict[str, object], sourcetype: str) -> None:
        """Unset ``sourcetype`` follows the codec; a configured one is used as is."""
        hec = {"type": "splunk_hec", "url": "https://splunk.example:8088", "token": "t", "codec": codec}
        assert default_sourcetype(config(hec).codec) == sourcetype
        assert config(hec | {"sourcetype": "mine"}).sourcetype == "mine"


class TestFailures:
    @pytest.mark.parametrize(
        "fault", [H.BUSY, H.INTERNAL, H.THROTTLED, H.MALFORMED], ids=["503", "500", "429", "bad-200"]
    )
    async def test_transient(self, fake_hec: FakeHec, ctx: SinkContext, fault: H.Fault) -> None:
        """Busy, internal error, throttling and malformed replies are transient."""
        fake_hec.faults.append(fault)
        sink = build(table(fake_hec), ctx)
        with pytest.raises(TransientSinkError) as info:
            await sink.send(events(2))
        if fault is H.THROTTLED:
            assert info.value.retry_after == 0
        await sink.send(events(2))
        assert len(fake_hec.indexed) == 2
        await sink.aclose()

    @pytest.mark.parametrize("token", [None, "wrong-token"])
    async def test_bad_token_holds_batch_and_never_logs_it(
        self, fake_hec: FakeHec, ctx: SinkContext, token: str | None, caplog: pytest.LogCaptureFixture
    ) -> None:
        """401/403 are transient (credentials, not data) and no message quotes the token."""
        caplog.set_level(logging.DEBUG)
        fake_hec.token = "the-server-expects-another-one"
        sink = build(table(fake_hec, token=token or H.TOKEN), ctx)
        with pytest.raises(TransientSinkError, match="credentials refused") as info:
            await sink.send(events(1))
        leaked = H.TOKEN in str(info.value) or H.TOKEN in caplog.text
        assert not leaked, "the HEC token leaked into the error or the log"
        await sink.aclose()

    async def test_invalid_event_rejected_rest_retried(self, fake_hec: FakeHec, ctx: SinkContext) -> None:
        """Code 6 with invalid-event-number: earlier events count as delivered, later ones retried."""
        fake_hec.ack_enabled = False
        bad = events(5)[2].alert["id"]
        fake_hec.reject = lambda env: 6 if env["event"]["id"] == bad else None
        sink = build(table(fake_hec), ctx)
        result = await sink.send(events(5))
        assert list(result.rejected) == [2] and "code 6" in result.rejected[2]
        assert result.retry == [3, 4]
        assert len(fake_hec.indexed) == 2
        await sink.aclose()

    async def test_incorrect_index_rejects_batch(self, fake_hec: FakeHec, ctx: SinkContext) -> None:
        """Code 7 (no such index) without an event number is a permanent batch rejection."""
        fake_hec.reject = lambda env: None
        sink = build(table(fake_hec, index="nope"), ctx)
        with pytest.raises((PermanentSinkError, TransientSinkError)):
            await sink.send(events(1))
        await sink.aclose()

    async def test_413_splits(self, fake_hec: FakeHec, ctx: SinkContext) -> None:
        """413 halves the batch until each part fits."""
        fake_hec.faults.extend([H.TOO_LARGE, H.TOO_LARGE])
        sink = build(table(fake_hec), ctx)
        result = await sink.send(events(4))
        assert not result.rejected and not result.retry
        assert sorted(fake_hec.indexed_ids()) == sorted(e.alert["id"] for e in events(4))
        await sink.aclose()


def test_retry_after_parsing() -> None:
    """Delta-seconds and HTTP-dates; garbage ignored; at most an hour (``agent.retry``, which the HTTP
    sinks read a receiver's ``Retry-After`` with)."""
    clock = SystemClock()
    assert parse_retry_after("7", clock) == 7
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", clock) == 0
    assert parse_retry_after("soon", clock) is None
    assert parse_retry_after(None, clock) is None
    assert parse_retry_after("86400", clock) == 3600


def test_envelope_without_timestamp(ctx: SinkContext) -> None:
    """An alert without lastUpdateDateTime gets no ``time`` (Splunk uses receipt time)."""
    sink = build(
        {"type": "splunk_hec", "url": "http://127.0.0.1:1", "token": "t", "codec": {"type": "json"}}, ctx
    )
    assert isinstance(sink, SplunkHecSink)
    ev = events(1)[0]
    env = orjson.loads(sink.envelope(type(ev)({"id": "x"}, b'{"id":"x"}')))
    assert "time" not in env and env["event"] == {"id": "x"}


class TestHealthcheck:
    async def test_healthy_collector(self, fake_hec: FakeHec, ctx: SinkContext) -> None:
        """``GET /services/collector/health`` answered 200 (code 17): healthy; the token is not sent."""
        sink = build(table(fake_hec), ctx)
        await sink.healthcheck()
        assert fake_hec.requests and "Authorization" not in fake_hec.requests[-1]
        assert fake_hec.received == []  # nothing was sent
        await sink.aclose()

    @pytest.mark.parametrize(("answer", "code"), [(H.UNHEALTHY, 18), (H.ACK_UNAVAILABLE, 19)])
    async def test_unhealthy_collector(
        self, fake_hec: FakeHec, ctx: SinkContext, answer: H.Fault, code: int
    ) -> None:
        """A 503 from the health endpoint fails the check with HEC's code and text."""
        fake_hec.health = answer
        sink = build(table(fake_hec), ctx)
        with pytest.raises(TransientSinkError, match=f"HTTP 503: code {code}: HEC is unhealthy"):
            await sink.healthcheck()
        await sink.aclose()
