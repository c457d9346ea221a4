"""Unit tests: the rate budget on a virtual clock, Retry-After parsing, tick arithmetic, configuration."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from agent.metrics import AgentMetrics
from agent.retry import parse_retry_after
from agent.sources.config import GraphSecuritySourceConfig
from agent.sources.graph.budget import RateBudget
from agent.sources.graph.share import BudgetShare, Kind
from agent.sources.graph.source import GraphSecuritySource
from agent.timestamps import from_ticks, to_ticks
from tests.graph.harness import busiest_minute
from tests.support.clock import VirtualClock


class TestRateBudget:
    async def test_no_sixty_second_window_at_the_server_exceeds_the_limit(self) -> None:
        """Many greedy streams for five virtual minutes; for the first minute every answer takes 40 s
        and its request reaches the server just before it (the worst case), then answers are quick:
        every 60 s window *at the server* holds at most requests_per_minute requests."""
        clock = VirtualClock()
        budget = RateBudget(150, clock)
        start = clock.t
        arrivals: list[float] = []

        async def stream() -> None:
            for _ in range(10_000):  # far more than the budget grants in 300 s; cancelled below
                async with budget.slot():
                    took = 40.0 if clock.monotonic() < start + 60 else 0.01
                    arrivals.append(clock.monotonic() + took)
                    await clock.sleep(took)

        tasks = [asyncio.create_task(stream()) for _ in range(80)]
        await clock.run_until(start + 300)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert len(arrivals) > 500  # the budget is used, not starved
        assert busiest_minute(arrivals) <= 150

    async def test_counting_from_the_grant_alone_would_overshoot(self) -> None:
        """The case the old rule missed: a slow answer holds its slot until a minute after it came back."""
        clock = VirtualClock()
        budget = RateBudget(2, clock)
        grants: list[float] = []

        async def one(hold: float) -> None:
            async with budget.slot():
                grants.append(clock.monotonic())
                await clock.sleep(hold)

        first = asyncio.create_task(one(30.0))  # granted at 0, answered at 30
        second = asyncio.create_task(one(0.0))
        await clock.run_until(clock.t + 1)
        third = asyncio.create_task(one(0.0))
        await clock.run_until(clock.t + 200)
        await asyncio.gather(first, second, third)
        t0 = grants[0]
        assert grants[2] >= t0 + 30.0 + 60.0 - 1e-6  # not at t0 + 60: the first may have arrived at t0 + 30

    async def test_retry_after_blocks_every_caller_until_it_passes(self) -> None:
        """After block_for(7.5), no grant happens earlier than 7.5 s later, for any caller."""
        clock = VirtualClock()
        budget = RateBudget(6000, clock)
        grants: list[float] = []
        blocked_at = clock.t
        budget.block_for(7.5)

        async def one() -> None:
            async with budget.slot() as waited:
                grants.append(clock.monotonic())
                assert waited > 0

        tasks = [asyncio.create_task(one()) for _ in range(3)]
        await clock.run_until(clock.t + 20)
        await asyncio.gather(*tasks)
        assert grants and min(grants) >= blocked_at + 7.5

    async def test_every_slot_in_flight_waits_for_an_answer(self) -> None:
        """requests_per_minute below the concurrency: the third request waits for an answer plus a minute."""
        clock = VirtualClock()
        budget = RateBudget(2, clock)
        grants: list[float] = []

        async def one() -> None:
            async with budget.slot():
                grants.append(clock.monotonic())
                await clock.sleep(10.0)  # virtual time: the request's answer takes 10 s

        tasks = [asyncio.create_task(one()) for _ in range(3)]
        await clock.run_until(clock.t + 200)
        await asyncio.gather(*tasks)
        assert sorted(grants)[2] >= sorted(grants)[0] + 10.0 + 60.0 - 1e-6

    async def test_writes_holding_their_slots_keep_their_share_and_the_window_exact(self) -> None:
        """Polls and writes (issue #16's share, 0.2) both greedy, every request holding its slot for a
        while: the window stays exact at the server, writes get their guarantee, neither starves."""
        clock = VirtualClock()
        budget = RateBudget(100, clock)
        budget.share = BudgetShare(100, 0.2)
        arrivals: dict[str, list[float]] = {"poll": [], "write": []}

        async def greedy(kind: Kind) -> None:
            for _ in range(1_000):  # more than 480 virtual seconds hold at 2 s each; cancelled below
                async with budget.slot(kind):
                    arrivals[kind].append(clock.monotonic() + 2.0)  # arrives just before its answer
                    await clock.sleep(2.0)  # virtual time: the answer takes 2 s

        start = clock.t
        tasks = [asyncio.create_task(greedy(k)) for k in ("poll", "poll", "poll", "write", "write")]
        await clock.run_until(start + 480)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert busiest_minute(arrivals["poll"] + arrivals["write"]) <= 100
        polls = [g for g in arrivals["poll"] if g >= start + 120]
        writes = [g for g in arrivals["write"] if g >= start + 120]
        assert 0.15 <= len(writes) / (len(polls) + len(writes)) <= 0.35

    def test_small_budgets_still_allow_one_request(self) -> None:
        """requests_per_minute = 1 has a burst of one."""
        assert RateBudget(1, VirtualClock()).burst == 1.0


class TestRetryAfter:
    @pytest.mark.parametrize(("value", "expected"), [("10", 10.0), ("2.128", 2.128), ("0", 0.0), ("-3", 0.0)])
    def test_seconds(self, value: str, expected: float) -> None:
        """Whole or fractional seconds (Graph's docs show both 10 and 2.128)."""
        assert parse_retry_after(value, VirtualClock()) == expected

    def test_http_date(self) -> None:
        """An HTTP-date is the time left until then."""
        clock = VirtualClock()
        when = (clock.now() + timedelta(seconds=30)).strftime("%a, %d %b %Y %H:%M:%S GMT")
        assert parse_retry_after(when, clock) == pytest.approx(30, abs=1)

    @pytest.mark.parametrize("value", [None, "", "soon", "nan", "inf"])
    def test_missing_or_bad_is_none(self, value: str | None) -> None:
        """No usable header: ``None``, and the caller uses its default (exponential backoff territory)."""
        assert parse_retry_after(value, VirtualClock()) is None


class TestTicks:
    def test_round_trip_keeps_seven_digits(self) -> None:
        """100-ns ticks round-trip Graph's 7-digit timestamps exactly."""
        ts = "2026-11-27T10:00:01.1234567Z"
        assert from_ticks(to_ticks(ts)) == ts
        assert from_ticks(to_ticks(ts) + 1) == "2026-11-27T10:00:01.1234568Z"

    def test_shorter_fractions_and_offsets(self) -> None:
        """Fewer digits and +00:00 zones order like the instant they name."""
        assert to_ticks("2026-11-27T10:00:01Z") == to_ticks("2026-11-27T10:00:01.0000000+00:00")
        assert to_ticks("2026-11-27T10:00:01.5Z") - to_ticks("2026-11-27T10:00:01Z") == 5_000_000


def table(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {"type": "graph_security", "name": "t", "tenant_id": "t1", "client_id": "c"}
    base.update(kw)
    return base


class TestConfig:
    def test_client_secret_is_the_simple_form(self) -> None:
        """client_secret alone is valid and prints masked."""
        cfg = GraphSecuritySourceConfig(**table(client_secret="s3cr3t-value"))  # type: ignore[arg-type]
        assert "s3cr3t-value" not in repr(cfg)

    def test_exactly_one_credential(self) -> None:
        """Neither or both of client_secret and credential is an error."""
        with pytest.raises(ValidationError, match="exactly one"):
            GraphSecuritySourceConfig(**table())  # type: ignore[arg-type]
        with pytest.raises(ValidationError, match="exactly one"):
            GraphSecuritySourceConfig(
                **table(client_secret="a", credential={"type": "secret", "value": "b"})  # type: ignore[arg-type]
            )

    def test_workload_identity_defaults_to_the_environment(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """token_file defaults to AZURE_FEDERATED_TOKEN_FILE; without either it is an error."""
        monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", str(tmp_path / "token"))
        cfg = GraphSecuritySourceConfig(**table(credential={"type": "workload_identity"}))  # type: ignore[arg-type]
        assert cfg.credential is not None and cfg.credential.type == "workload_identity"
        assert cfg.credential.token_file == tmp_path / "token"
        monkeypatch.delenv("AZURE_FEDERATED_TOKEN_FILE")
        with pytest.raises(ValidationError, match="AZURE_FEDERATED_TOKEN_FILE"):
            GraphSecuritySourceConfig(**table(credential={"type": "workload_identity"}))  # type: ignore[arg-type]

    def test_certificate_files_are_checked(self, tmp_path: Path) -> None:
        """A missing key file, or a key file without certificate or thumbprint, is a config error."""
        with pytest.raises(ValidationError, match="not a readable file"):
            GraphSecuritySourceConfig(
                **table(credential={"type": "certificate", "private_key_path": str(tmp_path / "nope")})  # type: ignore[arg-type]
            )
        key = tmp_path / "k.pem"
        key.write_text("-----BEGIN PRIVATE KEY-----\n...\n-----END PRIVATE KEY-----\n")
        with pytest.raises(ValidationError, match="no certificate"):
            GraphSecuritySourceConfig(
                **table(credential={"type": "certificate", "private_key_path": str(key)})  # type: ignore[arg-type]
            )

    def test_unknown_keys_and_bad_service_sources_are_rejected(self) -> None:
        """extra=forbid, and serviceSource names are identifiers."""
        with pytest.raises(ValidationError):
            GraphSecuritySourceConfig(**table(client_secret="s", polling_interval=5))  # type: ignore[arg-type]
        with pytest.raises(ValidationError, match="serviceSource"):
            GraphSecuritySourceConfig(**table(client_secret="s", service_sources=["x' or 1 eq 1"]))  # type: ignore[arg-type]

    def test_one_app_key_per_tenant_and_app_whatever_the_case(self) -> None:
        """Sources with one app key share one budget (``agent.sources.graph.shared``)."""
        a = GraphSecuritySourceConfig(**table(name="a", client_secret="s"))  # type: ignore[arg-type]
        b = GraphSecuritySourceConfig(**table(name="b", client_secret="s", tenant_id="T1"))  # type: ignore[arg-type]
        c = GraphSecuritySourceConfig(**table(name="c", client_secret="s", tenant_id="t2"))  # type: ignore[arg-type]
        assert a.app_key() == b.app_key() != c.app_key()

    def test_streams_per_service_source_and_incidents(self) -> None:
        """One stream per serviceSource (or one for all), plus incidents when enabled."""
        cfg = GraphSecuritySourceConfig(
            **table(
                client_secret="s",
                service_sources=["microsoftSentinel", "microsoftDefenderForEndpoint"],  # type: ignore[arg-type]
                incidents=True,
            )
        )
        metrics = AgentMetrics(CollectorRegistry())
        assert GraphSecuritySource(cfg, VirtualClock(), metrics).stream_ids() == [
            "t/alerts_v2/microsoftSentinel",
            "t/alerts_v2/microsoftDefenderForEndpoint",
            "t/incidents/all",
        ]
        plain = GraphSecuritySourceConfig(**table(client_secret="s"))  # type: ignore[arg-type]
        assert GraphSecuritySource(plain, VirtualClock(), metrics).stream_ids() == ["t/alerts_v2/all"]


def test_a_graph_reply_never_shows_its_token_or_body() -> None:
    """``GraphReply`` carries the bearer token (for a retry after 401): a repr in a log or a
    traceback must not print it, nor the answer's body."""
    from agent.sources.graph.client import GraphReply

    token = "eyJ0eXAi.secret-bearer-token.sig"
    text = repr(GraphReply(429, b'{"error": "body"}', "req-1", "creq-1", 3.0, token))
    leaked = token in text or "body" in text
    assert not leaked, "the token or body is in GraphReply's repr"
    assert "429" in text and "req-1" in text
