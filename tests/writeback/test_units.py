"""Units of the write-back path: what may be sent, the config table, the budget share, the durable
journal and queue, the shared own-versions file, loop control and the codecs' mark."""

from __future__ import annotations

import asyncio
import fcntl
import os
import stat
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from agent.codecs import build_serializer
from agent.codecs.config import CefCodecConfig, EcsCodecConfig, JsonCodecConfig, LeefCodecConfig
from agent.config import load_settings
from agent.entra.claims import token_roles
from agent.errors import ConfigError, StateError
from agent.model import Batch, Commit
from agent.simulator.writes import access_token
from agent.sources.base import SourceContext
from agent.sources.graph.budget import RateBudget
from agent.sources.graph.share import BudgetShare
from agent.timestamps import format_dt
from agent.writeback.config import WritebackConfig
from agent.writeback.journal import Journal
from agent.writeback.loop import LoopControl, stream_entity
from agent.writeback.queue import QueueFull, RequestQueue
from agent.writeback.updates import Update, UpdateError, parse_update
from agent.writeback.versions import OwnVersions
from tests.support.clock import VirtualClock

DATA = Path(__file__).parent.parent / "data"


class TestUpdates:
    def test_alert_fields_and_comment(self) -> None:
        """The four updatable alert properties and a comment pass, in a stable order."""
        u = parse_update(
            "alert",
            {"comment": "c", "assignedTo": "a@b", "determination": "malware", "status": "resolved"},
        )
        assert list(u.changes) == ["status", "determination", "assignedTo"] and u.comment == "c"

    @pytest.mark.parametrize(
        ("entity", "body", "needle"),
        [
            ("alert", {"status": "closed"}, "status 'closed' is not one of: new, inProgress, resolved"),
            ("alert", {"status": "active"}, "is not one of"),
            ("incident", {"status": "new"}, "is not one of: active, inProgress, resolved, awaitingAction"),
            ("alert", {"classification": "TruePositive"}, "classification 'TruePositive'"),
            (
                "alert",
                {"determination": "compromisedUser"},
                "enum member for 'compromisedUser' is 'compromisedAccount'",
            ),
            ("alert", {"status": "unknownFutureValue"}, "is not one of"),
            ("alert", {"customTags": ["x"]}, "unknown field(s) 'customTags'"),
            ("alert", {"statuss": "resolved"}, "unknown field(s) 'statuss'"),
            ("alert", {}, "nothing to do"),
            ("alert", {"comment": " "}, "comment must be a non-empty string"),
            ("alert", {"comment": "x" * 8001}, "longer than 8000"),
            ("alert", {"assignedTo": 5}, "assignedTo must be a string"),
            ("incident", {"customTags": "x"}, "customTags must be a list"),
            ("alert", ["status"], "must be a JSON object"),
        ],
    )
    def test_bad_values_are_refused_with_the_reason(self, entity: Any, body: Any, needle: str) -> None:
        """Bad enum members, unknown fields, empty requests: one message naming the problem."""
        with pytest.raises(UpdateError) as err:
            parse_update(entity, body)
        assert needle in str(err.value)

    def test_empty_assignee_unassigns_and_tags_replace(self) -> None:
        """assignedTo "" or null is null (unassign); customTags is the whole new list."""
        u = parse_update("incident", {"assignedTo": "", "customTags": []})
        assert u.changes == {"assignedTo": None, "customTags": []}
        assert Update({"status": "resolved"}, "hi").describe() == "status=resolved; comment (2 chars)"


class TestConfig:
    def test_named_and_bare_tokens(self) -> None:
        """Tables keep their name; bare secrets (string, env table) become token-1, token-2 by position."""
        os.environ["WB_UNIT_TOKEN"] = "from-the-environment-0001"
        try:
            cfg = WritebackConfig(
                enabled=True,
                tokens=[{"name": "splunk", "token": "s" * 20}, "bare-secret-0002", {"env": "WB_UNIT_TOKEN"}],
            )
        finally:
            del os.environ["WB_UNIT_TOKEN"]
        assert [t.name for t in cfg.tokens] == ["splunk", "token-2", "token-3"]
        assert cfg.tokens[2].token.get_secret_value() == "from-the-environment-0001"
        assert "from-the-environment" not in repr(cfg)
        assert (cfg.address, cfg.port, cfg.forward_own_updates) == ("127.0.0.1", 9465, True)

    @pytest.mark.parametrize(
        ("data", "needle"),
        [
            ({"enabled": True}, "writeback: tokens: at least one token is required when enabled"),
            (
                {"tokens": [{"name": "a", "token": "x1-secret"}, {"name": "a", "token": "x2"}]},
                "duplicate name",
            ),
            (
                {"tokens": [{"name": "a", "token": "same-secret"}, {"name": "b", "token": "same-secret"}]},
                "same token",
            ),
            ({"tokens": [{"name": "bad name", "token": "x1-secret"}]}, "writeback.tokens[0].name:"),
            ({"budget_share": 1.0}, "writeback.budget_share: Input should be less than 1"),
            (
                {"tls": {"cert_file": "/nonexistent.pem", "key_file": "/nonexistent.key"}},
                "not a readable file",
            ),
            ({"bogus": 1}, "writeback.bogus: unknown key"),
        ],
    )
    def test_bad_tables_are_refused_without_echoing_secrets(self, data: dict[str, Any], needle: str) -> None:
        """One dotted-path problem each (as validate prints them); token values never in the text."""
        settings = {
            "sources": [
                {
                    "type": "graph_security",
                    "name": "s",
                    "tenant_id": "t",
                    "client_id": "c",
                    "client_secret": "x",
                }
            ],
            "sinks": [{"type": "stdout", "name": "o"}],
            "writeback": data,
        }
        with pytest.raises(ConfigError) as err:
            load_settings(data=settings)
        text = "\n".join(err.value.problems)
        assert needle in text, text
        leaked = "secret" in text
        assert not leaked, "the secret leaked into the problems"


class TestClaims:
    def test_roles_claim_of_a_jwt(self) -> None:
        """The simulator's tokens carry the granted roles; opaque tokens say nothing (None)."""
        token = access_token("t", "c", "https://g", ["SecurityAlert.ReadWrite.All"], 60, b"k" * 32)
        assert token_roles(token) == ["SecurityAlert.ReadWrite.All"]
        assert token_roles("opaque-token") is None
        assert token_roles("a.b.c") is None


async def _run_greedy(
    clock: VirtualClock, budget: RateBudget, kinds: dict[str, int], minutes: float
) -> list[tuple[float, str]]:
    grants: list[tuple[float, str]] = []

    async def greedy(kind: Any) -> None:
        for _ in range(100_000):  # far more than the budget grants in the run; cancelled below
            await budget.acquire(kind)
            grants.append((clock.monotonic(), kind))

    tasks = [asyncio.create_task(greedy(k)) for k, n in kinds.items() for _ in range(n)]
    await clock.run_until(clock.t + minutes * 60)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return grants


def _windows(grants: list[tuple[float, str]], start: float, end: float) -> list[dict[str, int]]:
    out = []
    for s in [start + i for i in range(int(end - start - 60))]:
        inside = [k for t, k in grants if s <= t < s + 60]
        out.append({"poll": inside.count("poll"), "write": inside.count("write"), "total": len(inside)})
    return out


class TestBudgetShare:
    async def test_greedy_polls_and_writes_each_get_their_share(self) -> None:
        """Both greedy for 8 virtual minutes at 150/min, share 0.2: every 60 s window holds at most 150,
        at least 30 writes and at least 120 polls once the first window has passed."""
        clock = VirtualClock()
        budget = RateBudget(150, clock)
        budget.share = BudgetShare(150, 0.2)
        assert budget.share.reserved == {"write": 30, "poll": 120}
        t0 = clock.t
        grants = await _run_greedy(clock, budget, {"poll": 5, "write": 1}, 8)
        windows = _windows(grants, t0 + 60, t0 + 480)
        assert max(w["total"] for w in windows) <= 150
        assert min(w["write"] for w in windows) >= 29  # one grant of slack at the window's edge
        assert min(w["poll"] for w in windows) >= 119

    async def test_an_idle_kind_lends_its_share(self) -> None:
        """With no write waiting, polls use all 150; with no poll waiting, writes do."""
        for kind in ("poll", "write"):
            clock = VirtualClock()
            budget = RateBudget(150, clock)
            budget.share = BudgetShare(150, 0.2)
            t0 = clock.t
            grants = await _run_greedy(clock, budget, {kind: 3}, 4)
            windows = _windows(grants, t0 + 60, t0 + 240)
            assert min(w[kind] for w in windows) >= 148 and max(w["total"] for w in windows) <= 150

    async def test_a_write_arriving_while_polls_saturate_goes_first(self) -> None:
        """Three greedy polls have taken more than their share; a write that arrives then gets the very
        next grant, within one token interval (1 s at 60/min)."""
        clock = VirtualClock()
        budget = RateBudget(60, clock)
        budget.share = BudgetShare(60, 0.2)
        grants: list[tuple[float, str]] = []

        async def greedy(kind: Any, times: int) -> None:
            for _ in range(times):
                await budget.acquire(kind)
                grants.append((clock.monotonic(), kind))

        polls = [asyncio.create_task(greedy("poll", 10**6)) for _ in range(3)]
        await clock.run_until(clock.t + 50)
        before, arrived = len(grants), clock.t
        assert before > budget.share.reserved["poll"]
        write = asyncio.create_task(greedy("write", 1))
        await clock.run_until(clock.t + 10)
        for t in polls:
            t.cancel()
        await asyncio.gather(write, *polls, return_exceptions=True)
        first_after = grants[before]
        assert first_after[1] == "write" and first_after[0] - arrived <= 1.0 + 1e-6

    def test_tiny_budgets(self) -> None:
        """One request a minute reserves nothing; two reserve one each."""
        assert BudgetShare(1, 0.2).reserved == {"write": 0, "poll": 1}
        assert BudgetShare(2, 0.2).reserved == {"write": 1, "poll": 1}


class TestJournal:
    def test_records_survive_and_the_file_is_private(self, tmp_path: Path) -> None:
        j = Journal(tmp_path / "s" / "q.jsonl")
        j.append({"t": "a", "n": 1})
        j.append({"t": "a", "n": 2})
        j.close()
        assert [r["n"] for r in Journal(j.path).load()] == [1, 2]
        assert stat.S_IMODE(j.path.stat().st_mode) == 0o600
        assert stat.S_IMODE(j.path.parent.stat().st_mode) == 0o700

    def test_torn_tail_is_ignored_and_cut(self, tmp_path: Path) -> None:
        """A half-written last record (no newline, or invalid) is dropped; the next append is clean."""
        path = tmp_path / "q.jsonl"
        path.write_bytes(b'{"n":1}\n{"n":2}\n{"n":3, "tor')
        j = Journal(path)
        assert [r["n"] for r in j.load()] == [1, 2]
        j.append({"n": 4})
        j.close()
        assert path.read_bytes() == b'{"n":1}\n{"n":2}\n{"n":4}\n'

    def test_damage_before_valid_records_is_refused(self, tmp_path: Path) -> None:
        """Garbage followed by valid records is not a torn append: StateError naming the file and line."""
        path = tmp_path / "q.jsonl"
        path.write_bytes(b'{"n":1}\nGARBAGE\n{"n":3}\n')
        with pytest.raises(StateError, match=r"q.jsonl is damaged at line 2"):
            Journal(path).load()
        assert path.read_bytes() == b'{"n":1}\nGARBAGE\n{"n":3}\n', "never rewritten on a guess"

    def test_compaction_replaces_atomically(self, tmp_path: Path) -> None:
        j = Journal(tmp_path / "q.jsonl")
        for n in range(5):
            j.append({"n": n})
        j.compact([{"n": "snap"}])
        j.append({"n": "after"})
        j.close()
        assert Journal(j.path).load() == [{"n": "snap"}, {"n": "after"}]
        assert [p.name for p in tmp_path.iterdir()] == ["q.jsonl"]


def _queue(tmp_path: Path, clock: VirtualClock, max_queued: int = 3, retention: float = 3600) -> RequestQueue:
    q = RequestQueue(Journal(tmp_path / "q.jsonl"), clock, max_queued, retention)
    q.load()
    return q


class TestQueue:
    def test_requests_and_steps_come_back_after_a_restart(self, tmp_path: Path) -> None:
        clock = VirtualClock()
        q = _queue(tmp_path, clock)
        a = q.submit("sim", "alert", "da1", Update({"status": "resolved"}, "c"), "splunk", key="k1")
        b = q.submit("sim", "incident", "7", Update({"customTags": ["x"]}), "splunk")
        q.step(a, "comment", "sending")
        q.step(a, "comment", "sent", "2026-01-01T00:00:00.0000001Z")
        q.step(a, "update", "sending")
        q.finish(b, {"status": 404, "code": "NotFound", "message": "m", "requestId": "r"})
        q.journal.close()
        again = _queue(tmp_path, clock)
        ra = again.get(a.id)
        assert ra is not None and ra.steps == {"comment": "sent", "update": "sending"}
        assert ra.open_steps() == ["update"] and ra.versions == ["2026-01-01T00:00:00.0000001Z"]
        assert again.by_key("splunk", "k1") is ra and again.by_key("other", "k1") is None
        rb = again.get(b.id)
        assert (
            rb is not None
            and rb.state == "failed"
            and rb.error is not None
            and rb.error["code"] == "NotFound"
        )
        assert [r.id for r in again.unfinished("sim")] == [a.id]
        assert len(q.journal.path.read_bytes().splitlines()) == 2, "compacted to one snapshot per request"

    def test_bounded(self, tmp_path: Path) -> None:
        """max_queued unfinished requests at most; finishing one makes room."""
        q = _queue(tmp_path, VirtualClock(), max_queued=2)
        first = q.submit("sim", "alert", "a", Update({"status": "new"}), "x")
        q.submit("sim", "alert", "b", Update({"status": "new"}), "x")
        with pytest.raises(QueueFull):
            q.submit("sim", "alert", "c", Update({"status": "new"}), "x")
        q.finish(first)
        q.submit("sim", "alert", "c", Update({"status": "new"}), "x")

    def test_finished_requests_are_forgotten_after_the_retention(self, tmp_path: Path) -> None:
        clock = VirtualClock()
        q = _queue(tmp_path, clock, retention=60)
        old = q.submit("sim", "alert", "a", Update({"status": "new"}), "x")
        q.finish(old)
        pending = q.submit("sim", "alert", "b", Update({"status": "new"}), "x")
        clock.t += 61
        q.journal.close()
        again = _queue(tmp_path, clock, retention=60)
        assert again.get(old.id) is None and again.get(pending.id) is not None

    def test_update_only_requests_compact_the_journal_and_expire_while_running(self, tmp_path: Path) -> None:
        """The commonest workload (changes, no comment: four records per request) compacts as it runs
        and forgets finished requests past the retention, without a restart."""
        clock = VirtualClock()
        q = _queue(tmp_path, clock, max_queued=1000, retention=60)
        first = None
        for _ in range(2000):
            req = q.submit("sim", "alert", "a", Update({"status": "resolved"}), "x")
            q.step(req, "update", "sending")
            q.step(req, "update", "sent", "2026-01-01T00:00:00Z")
            q.finish(req)
            first = first or req
            clock.t += 1
        assert first is not None and q.get(first.id) is None, "finished past the retention: forgotten"
        assert len(q) < 1000
        assert len(q.journal.path.read_bytes().splitlines()) < 4 * 2000 // 2, "compacted while running"


class TestOwnVersionsAndLoop:
    def _alert(self, version: str, alert_id: str = "da1") -> dict[str, Any]:
        return {"id": alert_id, "lastUpdateDateTime": version, "status": "resolved"}

    def test_other_processes_appends_are_seen(self, tmp_path: Path) -> None:
        """One writer (the CLI) appends; the agent's instance sees it on refresh; precision-insensitive."""
        clock = VirtualClock()
        agent_side = OwnVersions(tmp_path / "v.jsonl", clock, 3600)
        cli_side = OwnVersions(tmp_path / "v.jsonl", clock, 3600)
        cli_side.add("sim", "alert", "da1", "2026-01-01T00:00:00.12Z", "req-1", "cli")
        assert agent_side.lookup("sim", "alert", "da1", "2026-01-01T00:00:00.1200000Z") is None
        agent_side.refresh()
        found = agent_side.lookup("sim", "alert", "da1", "2026-01-01T00:00:00.1200000Z")
        assert found is not None and (found.request_id, found.by) == ("req-1", "cli")
        assert agent_side.lookup("sim", "incident", "da1", "2026-01-01T00:00:00.12Z") is None
        assert stat.S_IMODE((tmp_path / "v.jsonl").stat().st_mode) == 0o600

    def test_compaction_drops_expired_entries_and_keeps_appending(self, tmp_path: Path) -> None:
        clock = VirtualClock()
        v = OwnVersions(tmp_path / "v.jsonl", clock, 60)
        v.add("sim", "alert", "old", "2026-01-01T00:00:00Z", "r1", "a")
        clock.t += 120
        v.add("sim", "alert", "new", "2026-01-01T00:01:00Z", "r2", "a")
        v.compact()
        v.add("sim", "alert", "newer", "2026-01-01T00:02:00Z", "r3", "a")
        fresh = OwnVersions(tmp_path / "v.jsonl", clock, 60)
        fresh.refresh()
        assert fresh.lookup("sim", "alert", "old", "2026-01-01T00:00:00Z") is None
        assert fresh.lookup("sim", "alert", "newer", "2026-01-01T00:02:00Z") is not None

    def test_a_line_another_process_appends_during_compaction_survives(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The CLI appends right after the agent read the file for its compaction: not erased.

        The CLI's append is made when the writers' lock lets it (a blocked process appends once the
        lock is released), so the test needs no thread and no waiting.
        """
        clock, agent_clock = VirtualClock(), VirtualClock()
        path = tmp_path / "v.jsonl"
        agent_side = OwnVersions(path, agent_clock, 3600)
        cli_side = OwnVersions(path, clock, 3600)
        agent_side.add("sim", "alert", "da1", "2026-01-01T00:00:01Z", "r1", "splunk")
        deferred: list[bool] = []

        def cli_append() -> None:
            cli_side.add("sim", "alert", "da2", "2026-01-01T00:00:02Z", "r2", "cli")

        def lock_is_free() -> bool:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            finally:
                os.close(fd)
            return True

        real_now = agent_clock.now

        def now_then_cli_appends() -> datetime:
            """Compaction asks the time (its retention horizon) once it has read the file."""
            if not deferred:
                deferred.append(not lock_is_free())
                if not deferred[0]:
                    cli_append()
            return real_now()

        monkeypatch.setattr(agent_clock, "now", now_then_cli_appends)
        agent_side.compact()
        if deferred[0]:
            cli_append()  # the lock is released: the waiting writer appends now
        fresh = OwnVersions(path, clock, 3600)
        fresh.refresh()
        assert fresh.lookup("sim", "alert", "da2", "2026-01-01T00:00:02Z") is not None
        assert fresh.lookup("sim", "alert", "da1", "2026-01-01T00:00:01Z") is not None
        assert deferred == [True], "the file is read and replaced under the writers' lock"

    def test_the_running_agent_compacts_as_versions_accumulate(self, tmp_path: Path) -> None:
        """One new version per write (the usual case): maybe_compact rewrites the file as it grows,
        dropping entries past the retention."""
        clock = VirtualClock()
        v = OwnVersions(tmp_path / "v.jsonl", clock, 60)
        for i in range(3000):
            v.add("sim", "alert", f"a{i}", "2026-01-01T00:00:00Z", f"r{i}", "x")
            v.maybe_compact()
            clock.t += 1
        assert v.lookup("sim", "alert", "a0", "2026-01-01T00:00:00Z") is None, "expired: dropped"
        assert v.lookup("sim", "alert", "a2999", "2026-01-01T00:00:00Z") is not None
        assert len((tmp_path / "v.jsonl").read_bytes().splitlines()) < 3000 // 2, "rewritten while running"

    @pytest.mark.parametrize("forward", [True, False])
    async def test_loop_control_marks_or_holds_back_only_own_versions(
        self, tmp_path: Path, forward: bool
    ) -> None:
        """Own version: marked (forward) or left out with its commit kept; other versions untouched."""
        v = OwnVersions(tmp_path / "v.jsonl", VirtualClock(), 3600)
        v.add("sim", "alert", "da1", "2026-01-01T00:00:01Z", "req-9", "splunk")
        emitted: list[Batch] = []
        advanced: list[tuple[str, Commit]] = []

        async def emit(batch: Batch) -> None:
            emitted.append(batch)

        async def advance(stream: str, commit: Commit) -> None:
            advanced.append((stream, commit))

        ctx = LoopControl(v, forward).wrap(SourceContext(emit, advance, {}, asyncio.Event()))
        own, other = self._alert("2026-01-01T00:00:01Z"), self._alert("2026-01-01T00:00:02Z", "da2")
        await ctx.emit(Batch("sim/alerts_v2/all", [own, other], Commit(seen={"da1": "x", "da2": "y"})))
        await ctx.emit(Batch("sim/alerts_v2/all", [own], Commit(seen={"da1": "x"})))
        await ctx.emit(Batch("sim/incidents/all", [own], Commit(seen={"da1": "x"})))
        if forward:
            assert emitted[0].alerts[0]["siemAgent"] == {
                "origin": "siem-agent-writeback",
                "requestId": "req-9",
                "requestedBy": "splunk",
            }
            assert emitted[0].alerts[1] is other and len(emitted) == 3 and advanced == []
        else:
            assert [a["id"] for a in emitted[0].alerts] == ["da2"]
            assert advanced == [("sim/alerts_v2/all", Commit(seen={"da1": "x"}))]
        assert "siemAgent" not in emitted[-1].alerts[0], "an incident stream is a different entity"
        assert stream_entity("sim/alerts_v2/microsoftDefenderForEndpoint") == ("sim", "alert")


class TestCodecMark:
    def test_each_codec_shows_the_mark_only_on_marked_versions(self) -> None:
        """JSON: siemAgent object; ECS: labels.siem_agent_*; CEF: act=…; LEEF: siemAgentOrigin/RequestId."""
        alert = orjson.loads((DATA / "alerts_v2_get_response.json").read_bytes())
        mark = {"origin": "siem-agent-writeback", "requestId": "req-1", "requestedBy": "splunk"}
        marked = {**alert, "siemAgent": mark}
        enc = {
            c.type: build_serializer(c, None)
            for c in (
                JsonCodecConfig(type="json"),
                EcsCodecConfig(type="ecs"),
                CefCodecConfig(type="cef"),
                LeefCodecConfig(type="leef"),
            )
        }
        assert orjson.loads(enc["json"].encode(marked))["siemAgent"] == mark
        ecs = orjson.loads(enc["ecs"].encode(marked))
        assert ecs["labels"] == {
            "siem_agent_origin": "siem-agent-writeback",
            "siem_agent_request_id": "req-1",
            "siem_agent_requested_by": "splunk",
        }
        assert enc["cef"].encode(marked).decode().endswith(" act=siem-agent-writeback")
        leef = enc["leef"].encode(marked).decode()
        assert "^siemAgentOrigin=siem-agent-writeback^siemAgentRequestId=req-1" in leef
        for codec in enc.values():
            plain = codec.encode(alert).decode()
            assert "siem-agent-writeback" not in plain and "siem_agent" not in plain


def test_format_dt_helper_is_seven_digits() -> None:
    """(The simulator stamps versions with format_dt; the mark matches them exactly.)"""
    from datetime import UTC, datetime

    assert format_dt(datetime(2026, 1, 1, tzinfo=UTC) + timedelta(microseconds=5)).endswith(".0000050Z")


def test_every_writeback_metric_is_documented() -> None:
    """docs/operations.md and docs/writeback.md name every siem_agent_writeback_* metric."""
    from prometheus_client import CollectorRegistry

    from agent.writeback.metrics import WritebackMetrics

    registry = CollectorRegistry()
    WritebackMetrics(registry)
    names = [f.name + ("_total" if f.type == "counter" else "") for f in registry.collect()]
    docs = Path(__file__).resolve().parents[2] / "docs"
    for page in ("operations.md", "writeback.md"):
        text = (docs / page).read_text()
        assert [n for n in names if f"`{n}" not in text] == [], page


def test_the_example_config_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    """config/writeback.toml validates with its documented environment variables."""
    for var in ("GRAPH_CLIENT_SECRET", "WB_SPLUNK_TOKEN", "WB_SENTINEL_TOKEN"):
        monkeypatch.setenv(var, f"value-of-{var}-0123456789")
    settings = load_settings(Path(__file__).resolve().parents[2] / "config" / "writeback.toml")
    assert settings.writeback.enabled and [t.name for t in settings.writeback.tokens] == [
        "splunk",
        "sentinel",
    ]
