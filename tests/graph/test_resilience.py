"""Throttling, 5xx, timeouts, malformed pages, token lifecycle, multi-tenant isolation (pain points 5, 8, 10)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from agent.simulator.server import Fault, GraphSimulator, Seen, backdate, throttled, unavailable
from tests.graph.conftest import SimFactory
from tests.graph.harness import Harness, expected_versions, source_table
from tests.support.wait import until

SOURCES = ["microsoftDefenderForEndpoint", "microsoftDefenderForIdentity", "azureAdIdentityProtection"]


def polled(sim: GraphSimulator) -> set[tuple[str, str]]:
    """The versions the SOURCES streams should deliver."""
    return set().union(*(expected_versions(sim, s) for s in SOURCES))


def log_text(caplog: pytest.LogCaptureFixture) -> str:
    """Every captured record with its message and key/value fields (what a formatter would print)."""
    return "\n".join(f"{r.getMessage()} {r.__dict__!r}" for r in caplog.records)


def after_first_page(fault: Fault) -> object:
    """A hook that queues ``fault`` once, right after the first page was served."""
    fired: list[bool] = []

    def hook(s: GraphSimulator, seen: Seen) -> None:
        if not fired:
            fired.append(True)
            s.faults.append(fault)

    return hook


class TestThrottling:
    async def test_429_waits_exactly_retry_after_then_resumes_the_page(
        self, make_sim: SimFactory, harness: Harness, ca: Path
    ) -> None:
        """Pain point 10: after a 429 the next request comes no earlier than Retry-After (and not much later)."""
        sim = await make_sim()
        sim.add_alerts(30, when=backdate(60))
        sim.hooks.append(after_first_page(throttled("1.2")))  # type: ignore[arg-type]
        harness.strict["sim"] = sim
        harness.start(source_table(sim, ca))
        await harness.wait_delivered(expected_versions(sim))
        reqs = sim.graph_requests()
        i = next(k for k, r in enumerate(reqs) if r.status == 429)
        gap = reqs[i + 1].at - reqs[i].at
        assert 1.2 <= gap < 2.2, gap
        assert reqs[i + 1].query == reqs[i].query  # the same page again, not a restarted poll
        assert max(harness.versions().values()) == 1
        assert harness.metric("siem_agent_graph_throttled_total", tenant=sim.tenant_id) == 1
        assert harness.violations == []

    async def test_http_date_retry_after_is_honoured(
        self, make_sim: SimFactory, harness: Harness, ca: Path
    ) -> None:
        """Retry-After as an HTTP-date blocks the tenant until that date."""
        from email.utils import format_datetime

        sim = await make_sim()
        sim.add_alerts(15)
        when = format_datetime(backdate(-2.0), usegmt=True)  # whole seconds: 1-2 s from now
        sim.hooks.append(after_first_page(throttled(when)))  # type: ignore[arg-type]
        harness.start(source_table(sim, ca))
        await harness.wait_delivered(expected_versions(sim))
        reqs = sim.graph_requests()
        i = next(k for k, r in enumerate(reqs) if r.status == 429)
        assert reqs[i + 1].at - reqs[i].at >= 0.9

    async def test_throttling_holds_every_stream_of_the_tenant(
        self, make_sim: SimFactory, harness: Harness, ca: Path
    ) -> None:
        """Pain point 10: concurrent streams share the 429 — none sends again before Retry-After."""
        sim = await make_sim()
        sim.add_alerts(60, when=backdate(60))
        sim.add_incidents(10, when=backdate(60))
        state: dict[str, float] = {}

        def throttle_once(s: GraphSimulator, seen: Seen) -> None:
            if len(s.graph_requests()) >= 6 and "t" not in state:
                state["t"] = seen.at
                s.throttle(1.5)

        sim.hooks.append(throttle_once)
        harness.start(source_table(sim, ca, service_sources=SOURCES, incidents=True, page_size=5))
        await until(lambda: "t" in state, 5, "throttle")
        await harness.wait_delivered(polled(sim), timeout=10)
        reqs = sim.graph_requests()
        first_429 = next(r for r in reqs if r.status == 429)
        end = state["t"] + 1.5
        # Requests already on the wire when the first 429 came back may land just after it; nothing later.
        late = [r for r in reqs if first_429.at + 0.25 < r.at < end]
        assert late == []
        assert sum(r.status == 429 for r in reqs) <= 4  # at most the requests in flight (one per stream)
        assert max(harness.versions().values()) == 1

    async def test_request_rate_never_exceeds_the_budget(
        self, make_sim: SimFactory, harness: Harness, ca: Path
    ) -> None:
        """Pain point 10: with 60 requests/min shared by 3 streams, no window sees more than the bucket allows."""
        sim = await make_sim()
        sim.add_alerts(200, when=backdate(60))
        harness.start(source_table(sim, ca, service_sources=SOURCES, page_size=5, requests_per_minute=60))
        await until(lambda: len(sim.graph_requests()) >= 9, 10, "requests under budget")
        times = [r.at for r in sim.graph_requests()]
        # Bucket: burst 6, then 1/s. In any span of w seconds at most 6 + 1 * w (+1 for timing jitter).
        for i, t0 in enumerate(times):
            for t1 in times[i:]:
                n = sum(t0 <= t <= t1 for t in times)
                assert n <= 6 + (t1 - t0) + 1, (n, t1 - t0)
        assert len(times) <= 60  # and so never more than the minute's budget


class TestServerErrors:
    async def test_503_is_retried_over_a_new_connection(
        self, make_sim: SimFactory, harness: Harness, ca: Path
    ) -> None:
        """Graph asks for retries after a 503 over a fresh connection; the page is fetched again, nothing lost."""
        sim = await make_sim()
        sim.add_alerts(30, when=backdate(60))
        sim.hooks.append(after_first_page(unavailable(503)))  # type: ignore[arg-type]
        harness.start(source_table(sim, ca))
        await harness.wait_delivered(expected_versions(sim))
        reqs = sim.graph_requests()
        i = next(k for k, r in enumerate(reqs) if r.status == 503)
        used_before = {r.peer_port for r in reqs[: i + 1]}
        assert reqs[i + 1].peer_port not in used_before
        assert reqs[i + 1].query == reqs[i].query
        assert harness.metric("siem_agent_graph_retries_total", tenant=sim.tenant_id) >= 1
        assert max(harness.versions().values()) == 1

    async def test_persistent_5xx_fails_the_poll_with_bounded_attempts_then_recovers(
        self, make_sim: SimFactory, harness: Harness, ca: Path
    ) -> None:
        """504s beyond max_attempts end the poll (counted), the stream backs off, and the next poll succeeds."""
        sim = await make_sim()
        sim.add_alerts(12)
        sim.faults.extend(unavailable(504) for _ in range(3))
        harness.start(source_table(sim, ca, max_attempts=3))
        await harness.wait_delivered(expected_versions(sim))
        assert (
            harness.metric("siem_agent_poll_errors_total", stream="sim/alerts_v2/all", reason="transient")
            == 1
        )
        assert [r.status for r in sim.graph_requests()[:3]] == [504, 504, 504]

    async def test_timeout_is_retried(self, make_sim: SimFactory, harness: Harness, ca: Path) -> None:
        """A response slower than request_timeout_secs is abandoned and the request retried."""
        sim = await make_sim()
        sim.add_alerts(15)
        sim.hooks.append(after_first_page(Fault(200, b'{"value": []}', delay_secs=2.0)))  # type: ignore[arg-type]
        harness.start(source_table(sim, ca, request_timeout_secs=0.3))
        await harness.wait_delivered(expected_versions(sim))
        assert max(harness.versions().values()) == 1

    async def test_malformed_json_page_is_fetched_again(
        self, make_sim: SimFactory, harness: Harness, ca: Path
    ) -> None:
        """A truncated page body is a transient error: the same page is requested again; nothing lost."""
        sim = await make_sim()
        sim.add_alerts(25, when=backdate(60))
        sim.hooks.append(after_first_page(Fault(200, b'{"value": [{"id": "x"')))  # type: ignore[arg-type]
        harness.strict["sim"] = sim
        harness.start(source_table(sim, ca))
        await harness.wait_delivered(expected_versions(sim))
        assert max(harness.versions().values()) == 1
        assert harness.violations == []

    async def test_other_4xx_backs_off_that_stream_only(
        self, make_sim: SimFactory, harness: Harness, ca: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A 400 (an unknown serviceSource) fails that stream with a clear error; the other streams deliver."""
        sim = await make_sim()
        sim.add_alerts(20)
        harness.start(source_table(sim, ca, service_sources=[*SOURCES, "notAServiceSource"]))
        for s in SOURCES:
            await harness.wait_delivered(expected_versions(sim, s), prefix=f"sim/alerts_v2/{s}")
        bad = "sim/alerts_v2/notAServiceSource"
        await until(
            lambda: harness.metric("siem_agent_poll_errors_total", stream=bad, reason="request") >= 2, 5
        )
        text = log_text(caplog)
        assert "Graph returned 400" in text and "BadRequest" in text and "request-id" in text

    async def test_partial_content_is_never_taken_as_complete(
        self, make_sim: SimFactory, harness: Harness, ca: Path
    ) -> None:
        """Pain point 9: a 206 (a provider failed) is retried, never committed as a complete page."""
        sim = await make_sim()
        sim.add_alerts(15, when=backdate(60))
        partial = Fault(206, b'{"value": []}', {"Warning": '199 - "Microsoft/MDE/504/10000"'})
        sim.hooks.append(after_first_page(partial))  # type: ignore[arg-type]
        harness.strict["sim"] = sim
        harness.start(source_table(sim, ca))
        await harness.wait_delivered(expected_versions(sim))
        reqs = sim.graph_requests()
        i = next(k for k, r in enumerate(reqs) if r.status == 206)
        assert reqs[i + 1].query == reqs[i].query and reqs[i + 1].status == 200
        assert harness.violations == []


class TestTokens:
    async def test_token_reused_across_polls(self, make_sim: SimFactory, harness: Harness, ca: Path) -> None:
        """Pain point 8: one token serves many polls until near expiry (MSAL cache, off the event loop)."""
        sim = await make_sim()
        sim.add_alerts(25)
        harness.start(source_table(sim, ca, service_sources=SOURCES))
        await harness.wait_delivered(polled(sim))
        polls = len(sim.graph_requests())
        await until(lambda: len(sim.graph_requests()) >= polls + 6, 5, "more polls")
        assert len(sim.token_requests()) == 1

    async def test_token_expiry_mid_pagination_refreshes_once_and_continues(
        self, make_sim: SimFactory, harness: Harness, ca: Path
    ) -> None:
        """Pain point 8: a token expiring between pages costs one 401 and one refresh, not a restarted poll."""
        sim = await make_sim()
        sim.add_alerts(40, when=backdate(60))
        fired: list[bool] = []

        def expire(s: GraphSimulator, seen: Seen) -> None:
            if seen.query.get("$skiptoken") == "20" and not fired:
                fired.append(True)
                s.expire_tokens()

        sim.hooks.append(expire)
        harness.strict["sim"] = sim
        harness.start(source_table(sim, ca))
        await harness.wait_delivered(expected_versions(sim))
        reqs = sim.graph_requests()
        assert [r.status for r in reqs].count(401) == 1
        i = next(k for k, r in enumerate(reqs) if r.status == 401)
        assert reqs[i + 1].query == reqs[i].query and reqs[i + 1].status == 200
        assert len(sim.token_requests()) == 2
        assert harness.metric("siem_agent_poll_errors_total", stream="sim/alerts_v2/all", reason="auth") == 0
        assert max(harness.versions().values()) == 1

    async def test_revoked_credentials_back_off_then_recover(
        self, make_sim: SimFactory, harness: Harness, ca: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Revoked: one clear AADSTS error line per attempt, exponential cool-down; restored: delivery resumes."""
        caplog.set_level(logging.INFO)
        sim = await make_sim()
        sim.add_alerts(5)
        harness.start(source_table(sim, ca, service_sources=SOURCES, error_backoff_max_secs=0.4))
        await harness.wait_delivered(polled(sim))
        sim.revoked = True
        sim.expire_tokens()
        await until(lambda: "AADSTS7000215" in log_text(caplog), 5, "auth error logged")
        started = len(sim.token_requests())
        await until(lambda: len(sim.token_requests()) >= started + 2, 5, "cool-down retries")
        rejected = [r for r in caplog.records if r.getMessage().startswith("Token request rejected")]
        # Three streams share one credential: one line per token attempt, not one per stream and poll.
        assert len(rejected) <= len(sim.token_requests()) - 1
        # Pain point 5: the failure is visible in metrics, not only in the log.
        stream = f"sim/alerts_v2/{SOURCES[0]}"
        await until(
            lambda: harness.metric("siem_agent_poll_errors_total", stream=stream, reason="auth") >= 1, 5
        )
        stalled_at = harness.metric("siem_agent_last_successful_poll_timestamp_seconds", stream=stream)
        sim.revoked = False
        more = [a for a in sim.add_alerts(8) if a["serviceSource"] in SOURCES]
        await harness.wait_delivered({(a["id"], a["lastUpdateDateTime"]) for a in more})
        assert "Token acquired again." in caplog.text
        await until(
            lambda: (
                harness.metric("siem_agent_last_successful_poll_timestamp_seconds", stream=stream)
                > stalled_at
            ),
            5,
        )
        leaked = sim.client_secret in log_text(caplog)
        assert not leaked, "the client secret leaked into the log"

    async def test_token_endpoint_5xx_is_transient(
        self, make_sim: SimFactory, harness: Harness, ca: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """MSAL raises on a token-endpoint 503 (and replays it ~5 s): a transient retry, not an auth failure."""
        sim = await make_sim()
        sim.add_alerts(3)
        sim.token_faults.append(unavailable(503))
        harness.start(source_table(sim, ca, max_attempts=2))
        await harness.wait_delivered(expected_versions(sim), timeout=15)
        assert harness.metric("siem_agent_poll_errors_total", stream="sim/alerts_v2/all", reason="auth") == 0
        assert "Token request rejected" not in caplog.text


class TestMultiTenant:
    async def test_one_tenants_bad_credentials_do_not_block_another(
        self, make_sim: SimFactory, harness: Harness, ca: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Each tenant has its own credential, budget and streams; a failing one never stops the other."""
        good = await make_sim(
            tenant_id="11111111-0000-4000-8000-000000000001", client_secret="good-tenant-secret"
        )
        bad = await make_sim(
            tenant_id="22222222-0000-4000-8000-000000000002", client_secret="bad-tenant-secret"
        )
        good.add_alerts(30)
        bad.add_alerts(30)
        harness.start(source_table(good, ca, name="good"))
        harness.start(source_table(bad, ca, name="bad", client_secret="wrong-value-for-bad-tenant"))
        await harness.wait_delivered(expected_versions(good), prefix="good/")
        await until(lambda: len(bad.token_requests()) >= 2, 5, "bad tenant retrying")
        assert harness.versions("bad/") == {}
        assert all(not t.done() for t in harness._tasks)  # nobody crashed
        more = good.add_alerts(3)  # the good tenant keeps polling
        await harness.wait_delivered({(a["id"], a["lastUpdateDateTime"]) for a in more}, prefix="good/")
        assert "AADSTS7000215" in log_text(caplog)
        assert "wrong-value-for-bad-tenant" not in log_text(caplog)

    async def test_tenants_are_throttled_independently(
        self, make_sim: SimFactory, harness: Harness, ca: Path
    ) -> None:
        """A 429 from one tenant does not hold another tenant's requests."""
        one = await make_sim(tenant_id="33333333-0000-4000-8000-000000000003")
        two = await make_sim(tenant_id="44444444-0000-4000-8000-000000000004")
        one.add_alerts(10)
        two.add_alerts(10)
        one.throttle(1.5)
        harness.start(source_table(one, ca, name="one"))
        harness.start(source_table(two, ca, name="two"))
        await harness.wait_delivered(expected_versions(two), prefix="two/", timeout=1.2)
        assert harness.versions("one/") == {}
        await harness.wait_delivered(expected_versions(one), prefix="one/", timeout=5)
