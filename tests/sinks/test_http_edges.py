"""Issue #15: HTTP edge cases never lose or misfile a batch, never leak a credential.

* Redirects are not followed by any HTTP sink nor by the token client: a 3xx holds the batch (nothing
  counted delivered, nothing dead-lettered), names the ``Location``, and the other origin gets nothing.
* 404/405 mean a wrong URL: the batch is held, the sink is down with the URL in its reason.
* A HEC URL given with the collector path works; user info in a URL and credentials over plain http
  to another host are refused at config time; ``tls.verify = false`` and allowed cleartext credentials
  are warned about.
* A wrong tenant is "tenant_not_found" with its AADSTS code.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from agent.config import load_settings
from agent.errors import ConfigError, EndpointError, TransientSinkError
from agent.health import Health
from agent.metrics import AgentMetrics
from agent.sinks import SinkContext
from agent.sinks.audit import insecure_settings
from tests.fakes import hec as H
from tests.fakes.hec import FakeHec
from tests.fakes.logs_ingestion import FakeLogsIngestion
from tests.sinks.conftest import RunnerHarness, alert, build, config, events
from tests.support.wait import until


class Origin:
    """An HTTP server on 127.0.0.1 that answers every request with ``status`` (and a ``Location``)."""

    def __init__(self, status: int = 200, location: str | None = None) -> None:
        self.status = status
        self.location = location
        self.requests: list[tuple[str, str]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.requests.append((request.method, request.path))
        headers = {"Location": self.location} if self.location else {}
        return web.Response(status=self.status, text="moved" if self.location else "ok", headers=headers)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def elsewhere() -> AsyncIterator[Origin]:
    """The origin a redirect points to: it must never receive anything."""
    origin = Origin()
    await origin.start()
    yield origin
    await origin.stop()


def sink_table(kind: str, url: str, fake_logs: FakeLogsIngestion | None = None) -> dict[str, Any]:
    if kind == "http":
        return {"type": "http", "url": url + "/ingest", "bearer_token": "tok-do-not-leak"}
    if kind == "splunk_hec":
        return {"type": "splunk_hec", "url": url, "token": H.TOKEN, "acknowledgement": False}
    if kind == "elasticsearch":
        return {"type": "elasticsearch", "url": url, "index": "a", "api_key": "key-do-not-leak"}
    assert fake_logs is not None
    return fake_logs.sink_table(endpoint=url)


class TestRedirects:
    @pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
    @pytest.mark.parametrize("kind", ["http", "splunk_hec", "elasticsearch", "logs_ingestion"])
    async def test_a_redirect_holds_the_batch_and_reaches_nobody(
        self,
        kind: str,
        status: int,
        elsewhere: Origin,
        fake_logs: FakeLogsIngestion,
        ctx: SinkContext,
        metrics: AgentMetrics,
        tmp_path: Path,
    ) -> None:
        """Every HTTP sink: the send fails as an endpoint error naming the Location; through the runner
        nothing is counted delivered, committed or dead-lettered; the other origin saw no request."""
        redirector = Origin(status, elsewhere.url + "/stolen?sig=secret-query")
        await redirector.start()
        try:
            table = {**sink_table(kind, redirector.url, fake_logs), "codec": {"type": "json"}}
            first = build(table, ctx)
            with pytest.raises(EndpointError) as err:
                await first.send(events(3))
            await first.aclose()
            assert f"HTTP {status} redirect to {elsewhere.url}/stolen;" in str(err.value)
            leaked = "secret-query" in str(err.value)
            assert not leaked, "the URL's query leaked into the error"
            table["retry"] = {"initial_backoff_secs": 0.01, "max_backoff_secs": 0.01}
            sink = build(table, ctx)
            harness = RunnerHarness(sink, table, metrics, tmp_path)
            feeder = asyncio.create_task(harness.feed([alert(i) for i in range(5)], per_batch=5))
            run = asyncio.create_task(harness.runner.run())
            await until(lambda: len(redirector.requests) >= 4, 10, "retries against the redirect")
            run.cancel()
            await asyncio.gather(feeder, run, return_exceptions=True)
            await sink.aclose()
        finally:
            await redirector.stop()
        assert elsewhere.requests == []
        assert harness.commits == [] and not (tmp_path / "dead.jsonl").exists()
        assert metrics.registry.get_sample_value("siem_agent_events_sent_total", {"sink": "test"}) is None

    @pytest.mark.parametrize("location", ["http://[bad", "http://127.0.0.1:99999/x?sig=secret-query"])
    @pytest.mark.parametrize("kind", ["http", "splunk_hec", "elasticsearch", "logs_ingestion"])
    async def test_a_malformed_location_is_the_usual_redirect_error(
        self,
        kind: str,
        location: str,
        fake_logs: FakeLogsIngestion,
        ctx: SinkContext,
        metrics: AgentMetrics,
        tmp_path: Path,
    ) -> None:
        """A 302 whose ``Location`` yarl cannot parse (bad IPv6 literal, port above 65535) fails as
        the usual endpoint error, not a bare ``ValueError`` that would end the lane: the runner keeps
        retrying, nothing is delivered, committed or dead-lettered."""
        redirector = Origin(302, location)
        await redirector.start()
        try:
            table = {**sink_table(kind, redirector.url, fake_logs), "codec": {"type": "json"}}
            first = build(table, ctx)
            with pytest.raises(EndpointError) as err:
                await first.send(events(3))
            await first.aclose()
            message = str(err.value)
            leaked = "secret-query" in message or "[bad" in message
            assert not leaked, "the malformed Location leaked into the error"
            assert "HTTP 302 redirect to (unparsable Location); redirects are not followed" in message
            table["retry"] = {"initial_backoff_secs": 0.01, "max_backoff_secs": 0.01}
            sink = build(table, ctx)
            harness = RunnerHarness(sink, table, metrics, tmp_path)
            feeder = asyncio.create_task(harness.feed([alert(i) for i in range(5)], per_batch=5))
            run = asyncio.create_task(harness.runner.run())
            await until(lambda: len(redirector.requests) >= 4 or run.done(), 10, "retries")
            assert not run.done(), run.exception()
            run.cancel()
            await asyncio.gather(feeder, run, return_exceptions=True)
            await sink.aclose()
        finally:
            await redirector.stop()
        assert harness.commits == [] and not (tmp_path / "dead.jsonl").exists()
        assert metrics.registry.get_sample_value("siem_agent_events_sent_total", {"sink": "test"}) is None

    async def test_token_endpoint_redirect_is_refused_and_the_secret_stays_home(
        self, fake_logs: FakeLogsIngestion, elsewhere: Origin, ctx: SinkContext
    ) -> None:
        """MSAL's session does not follow a 307 from the token endpoint (it would re-post the client
        secret there): the sink holds the batch with an error naming the Location."""
        fake_logs.token_redirect = elsewhere.url + "/steal"
        sink = build(fake_logs.sink_table(), ctx)
        with pytest.raises(TransientSinkError) as err:
            await sink.send(events(1))
        await sink.aclose()
        assert "token_endpoint_redirect" in str(err.value) and f"{elsewhere.url}/steal" in str(err.value)
        assert elsewhere.requests == [] and fake_logs.rows == []


class TestWrongEndpoint:
    @pytest.mark.parametrize("status", [404, 405])
    async def test_404_and_405_hold_the_batch_and_mark_the_sink_down(
        self, status: int, ctx: SinkContext, metrics: AgentMetrics, tmp_path: Path
    ) -> None:
        """A wrong URL dead-letters nothing and commits nothing; readiness names the URL (safe form)."""
        origin = Origin(status)
        await origin.start()
        table = {
            "type": "http",
            "url": origin.url + "/wrong/path?token=q-secret",
            "codec": {"type": "json"},
            "retry": {"initial_backoff_secs": 0.01, "max_backoff_secs": 0.01},
        }
        sink = build(table, ctx)
        health = Health(lambda: 0.0)
        harness = RunnerHarness(sink, table, metrics, tmp_path)
        harness.runner._on_health = lambda up, reason: health.sink_state("test", up, reason)
        feeder = asyncio.create_task(harness.feed([alert(i) for i in range(5)], per_batch=5))
        run = asyncio.create_task(harness.runner.run())
        try:
            await until(lambda: len(origin.requests) >= 3, 10, "retries against the wrong URL")
        finally:
            run.cancel()
            await asyncio.gather(feeder, run, return_exceptions=True)
            await sink.aclose()
            await origin.stop()
        ready, lines = health.report()
        assert not ready
        leaked = "q-secret" in lines[0]
        assert not leaked, "the URL's query leaked into the log line"
        assert f"{origin.url}/wrong/path: HTTP {status}: wrong endpoint, check the URL" in lines[0], lines
        assert lines[0].count(origin.url) == 1, lines  # the URL once, not repeated after the status
        assert harness.commits == [] and not (tmp_path / "dead.jsonl").exists()

    @pytest.mark.parametrize(
        "suffix", ["/services/collector/event", "/services/collector", "/services/collector/"]
    )
    async def test_hec_url_with_the_collector_path_is_accepted(
        self, suffix: str, fake_hec: FakeHec, ctx: SinkContext
    ) -> None:
        """``url = …/services/collector/event`` (a common copy-paste) is cut back to the base."""
        sink = build({"type": "splunk_hec", "url": fake_hec.url + suffix, "token": H.TOKEN}, ctx)
        await sink.send(events(2))
        await sink.aclose()
        assert len(fake_hec.indexed) == 2


class TestConfig:
    @pytest.mark.parametrize(
        "table",
        [
            {"type": "http", "url": "https://u:pw-do-not-leak@h/in"},
            {"type": "splunk_hec", "url": "https://u:pw-do-not-leak@h:8088", "token": "t"},
            {"type": "elasticsearch", "url": "https://u:pw-do-not-leak@h:9200", "index": "a"},
        ],
    )
    def test_user_info_in_a_url_is_refused_without_echoing_it(
        self, table: dict[str, Any], tmp_path: Path
    ) -> None:
        """Credentials in a URL (aiohttp would crash on them next to the sink's own auth) fail at config."""
        with pytest.raises(ConfigError) as err:
            load_settings(data=settings(tmp_path, {"name": "s", **table}))
        text = "\n".join(err.value.problems)
        leaked = "pw-do-not-leak" in text
        assert not leaked, "the URL's password leaked into the config error"
        assert "user info (user:password@) is not allowed in the URL" in text

    def test_hec_base_url_with_a_query_is_refused(self) -> None:
        """A query on a base URL would end up in the middle of the paths the sink appends."""
        with pytest.raises(ValueError, match="must not have a query"):
            config({"type": "splunk_hec", "url": "https://h:8088?token=x", "token": "t"})

    @pytest.mark.parametrize(
        "table",
        [
            {"type": "splunk_hec", "url": "http://splunk.example:8088", "token": "t"},
            {"type": "elasticsearch", "url": "http://es.example:9200", "index": "a", "api_key": "k"},
            {"type": "http", "url": "http://siem.example/in", "headers": {"X-Key": "k"}},
        ],
    )
    def test_credentials_over_plain_http_are_refused_unless_allowed(self, table: dict[str, Any]) -> None:
        """Cleartext credentials to another host need ``allow_plain_http_credentials``; then a warning."""
        with pytest.raises(ValueError, match="cleartext over http://"):
            config(table)
        allowed = config({**table, "allow_plain_http_credentials": True})
        assert insecure_settings([allowed]) == [
            "sinks.test: credentials are sent in cleartext over http:// (allow_plain_http_credentials = true)"
        ]

    def test_loopback_http_and_https_need_no_exception(self) -> None:
        """Credentials that never leave the machine, or go over TLS, are fine and not warned about."""
        cfgs = [
            config({"type": "splunk_hec", "url": "http://127.0.0.1:8088", "token": "t"}),
            config({"type": "splunk_hec", "url": "https://splunk.example:8088", "token": "t"}),
            config({"type": "http", "url": "http://localhost/in", "bearer_token": "t"}),
        ]
        assert insecure_settings(cfgs) == []

    def test_tls_verify_false_is_warned_about(self) -> None:
        """``tls.verify = false`` works, and says what it costs."""
        cfgs = [
            config({"type": "tcp", "host": "h", "port": 6514, "tls": {"verify": False}}),
            config({"type": "elasticsearch", "url": "https://es", "index": "a", "tls": {"verify": False}}),
        ]
        warnings = insecure_settings(cfgs)
        assert len(warnings) == 2 and all("tls.verify: false" in w for w in warnings)


def settings(tmp_path: Path, sink: dict[str, Any]) -> dict[str, Any]:
    source = {
        "type": "graph_security",
        "name": "g",
        "tenant_id": "t",
        "client_id": "c",
        "client_secret": "s",
    }
    return {"state_dir": str(tmp_path), "sources": [source], "sinks": [sink]}


class TestTenant:
    async def test_a_wrong_tenant_is_named_with_its_aadsts_code(
        self, fake_logs: FakeLogsIngestion, ctx: SinkContext
    ) -> None:
        """Entra ID answers discovery for an unknown tenant with 400 AADSTS90002: the error says
        "tenant_not_found" and keeps the code, instead of MSAL's message cut mid-URL."""
        fake_logs.known_tenants_only = True
        sink = build(fake_logs.sink_table(tenant_id="not-a-tenant"), ctx)
        with pytest.raises(TransientSinkError) as err:
            await sink.send(events(1))
        await sink.aclose()
        text = str(err.value)
        assert "tenant_not_found (AADSTS90002: Entra ID does not know tenant 'not-a-tenant'" in text, text


class TestElasticsearchMissingIndex:
    async def test_item_404_holds_the_batch(
        self, ctx: SinkContext, metrics: AgentMetrics, tmp_path: Path
    ) -> None:
        """A ``_bulk`` whose items answer 404 ``index_not_found_exception`` (auto-creation off): the
        index is wrong, not the events — held, not dead-lettered."""

        async def bulk(request: web.Request) -> web.Response:
            lines = (await request.read()).splitlines()
            item = {
                "create": {
                    "status": 404,
                    "error": {"type": "index_not_found_exception", "reason": "no such index [a]"},
                }
            }
            return web.json_response({"errors": True, "items": [item] * (len(lines) // 2)})

        app = web.Application()
        app.router.add_post("/_bulk", bulk)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        table = {
            "type": "elasticsearch",
            "url": url,
            "index": "a",
            "compression": "none",
            "retry": {"initial_backoff_secs": 0.01, "max_backoff_secs": 0.01},
        }
        sink = build(table, ctx)
        try:
            with pytest.raises(EndpointError, match="index_not_found_exception"):
                await sink.send(events(3))
            harness = RunnerHarness(sink, table, metrics, tmp_path)
            feeder = asyncio.create_task(harness.feed([alert(i) for i in range(4)], per_batch=4))
            run = asyncio.create_task(harness.runner.run())
            retries = metrics.send_retries.labels("test")
            await until(lambda: retries._value.get() >= 3, 10, "retries")
            run.cancel()
            await asyncio.gather(feeder, run, return_exceptions=True)
        finally:
            await sink.aclose()
            await runner.cleanup()
        assert harness.commits == [] and not (tmp_path / "dead.jsonl").exists()
