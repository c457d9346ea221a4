"""HTTP sinks through a proxy: ``proxy_url``, the environment's proxy variables, ``NO_PROXY``.

Splunk HEC (plain ``http://`` fake: the proxy forwards absolute-form requests) and Logs Ingestion
(HTTPS fake: CONNECT tunnels, for MSAL's token requests and for the ingestion calls alike), against
the loopback proxy in tests/fakes/proxy.py. The sinks conftest clears every proxy variable first.
"""

from __future__ import annotations

import base64
import logging

import pytest

from agent.errors import TransientSinkError
from agent.sinks import SinkContext
from tests.fakes import hec as H
from tests.fakes.hec import FakeHec
from tests.fakes.logs_ingestion import FakeLogsIngestion
from tests.fakes.proxy import ConnectProxy
from tests.sinks.conftest import build, config, events

PROXY_USER = "proxy-user"
PROXY_PASSWORD = "proxy-pass-7c1e-do-not-log"


def with_credentials(proxy: ConnectProxy) -> str:
    return f"http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{proxy.port}"


def hec_table(hec: FakeHec, **over: object) -> dict[str, object]:
    return {
        "type": "splunk_hec",
        "url": hec.url,
        "token": H.TOKEN,
        "ack_poll_interval_secs": 0.01,
        "codec": {"type": "json"},
        **over,
    }


def log_text(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(f"{r.getMessage()} {r.__dict__!r}" for r in caplog.records)


def assert_not_leaked(text: str, proxy: ConnectProxy) -> None:
    leaked = PROXY_PASSWORD in text
    assert not leaked, "the proxy password leaked into the text"
    leaked = with_credentials(proxy) in text
    assert not leaked, "the proxy URL with credentials leaked into the text"


class TestSplunkHec:
    async def test_configured_proxy_url(
        self,
        fake_hec: FakeHec,
        proxy: ConnectProxy,
        ctx: SinkContext,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Event and ack requests go through ``proxy_url``, with its credentials; nothing logs the URL."""
        caplog.set_level(logging.DEBUG)
        sink = build(hec_table(fake_hec, proxy_url=with_credentials(proxy)), ctx)
        await sink.start()
        evs = events(3)
        await sink.send(evs)
        await sink.aclose()
        assert fake_hec.indexed_ids() == [e.alert["id"] for e in evs]
        paths = {r.split("?", 1)[0] for r in proxy.requests}
        assert paths == {f"POST {fake_hec.url}/services/collector/{p}" for p in ("event", "ack")}
        assert proxy.targets == []
        basic = "Basic " + base64.b64encode(f"{PROXY_USER}:{PROXY_PASSWORD}".encode()).decode()
        assert set(proxy.authorizations) == {basic}
        # The proxy's credentials reach no request header the receiver sees.
        assert not any(PROXY_PASSWORD in str(r) for r in fake_hec.requests)
        assert_not_leaked(log_text(caplog), proxy)

    async def test_unreachable_proxy_error_hides_credentials(
        self,
        fake_hec: FakeHec,
        proxy: ConnectProxy,
        ctx: SinkContext,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A proxy that refuses connections: transient, and the error names no credentials."""
        caplog.set_level(logging.DEBUG)
        url = with_credentials(proxy)
        await proxy.stop()  # its port now refuses connections
        sink = build(hec_table(fake_hec, proxy_url=url), ctx)
        with pytest.raises(TransientSinkError) as info:
            await sink.send(events(1))
        await sink.aclose()
        assert fake_hec.requests == []
        assert_not_leaked(str(info.value), proxy)
        assert_not_leaked(log_text(caplog), proxy)

    async def test_environment_proxy_then_no_proxy(
        self,
        fake_hec: FakeHec,
        proxy: ConnectProxy,
        ctx: SinkContext,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Without ``proxy_url`` the environment's proxy (``HTTP_PROXY`` for ``http://``) applies; NO_PROXY bypasses it."""
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        sink = build(hec_table(fake_hec), ctx)
        await sink.send(events(2))
        await sink.aclose()
        assert f"POST {fake_hec.url}/services/collector/event" in proxy.requests
        assert len(fake_hec.indexed) == 2

        before = proxy.seen
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        sink = build(hec_table(fake_hec), ctx)
        await sink.send(events(2, start=2))
        await sink.aclose()
        assert len(fake_hec.indexed) == 4
        assert proxy.seen == before


class TestLogsIngestion:
    async def test_configured_proxy_url_tunnels_token_and_ingestion(
        self,
        fake_logs: FakeLogsIngestion,
        proxy: ConnectProxy,
        ctx: SinkContext,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """MSAL (token endpoint) and the ingestion calls both CONNECT through ``proxy_url``."""
        caplog.set_level(logging.DEBUG)
        sink = build(fake_logs.sink_table(proxy_url=with_credentials(proxy)), ctx)
        await sink.start()
        evs = events(4)
        await sink.send(evs)
        await sink.aclose()
        assert [r["id"] for r in fake_logs.rows] == [e.alert["id"] for e in evs]
        assert fake_logs.token_requests == 1
        target = fake_logs.url.removeprefix("https://")
        assert proxy.targets.count(target) >= 2  # at least one tunnel for MSAL, one for aiohttp
        assert set(proxy.targets) == {target}
        basic = "Basic " + base64.b64encode(f"{PROXY_USER}:{PROXY_PASSWORD}".encode()).decode()
        assert proxy.authorizations and set(proxy.authorizations) == {basic}
        assert_not_leaked(log_text(caplog), proxy)

    async def test_environment_proxy_then_no_proxy(
        self,
        fake_logs: FakeLogsIngestion,
        proxy: ConnectProxy,
        ctx: SinkContext,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """HTTPS_PROXY from the environment carries both clients; NO_PROXY=127.0.0.1 bypasses it."""
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        sink = build(fake_logs.sink_table(), ctx)
        await sink.send(events(2))
        await sink.aclose()
        target = fake_logs.url.removeprefix("https://")
        assert proxy.targets.count(target) >= 2
        assert len(fake_logs.rows) == 2

        before = proxy.seen
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        sink = build(fake_logs.sink_table(name="other"), ctx)
        await sink.send(events(2, start=2))
        await sink.aclose()
        assert len(fake_logs.rows) == 4
        assert proxy.seen == before


def test_proxy_url_is_a_secret(proxy: ConnectProxy) -> None:
    """``proxy_url`` may carry credentials: the parsed configuration never shows it."""
    cfg = config({"type": "http", "url": "https://127.0.0.1:9/in", "proxy_url": with_credentials(proxy)})
    assert cfg.proxy_url.get_secret_value() == with_credentials(proxy)
    assert_not_leaked(repr(cfg), proxy)
    assert_not_leaked(str(cfg.model_dump()), proxy)
