"""Incremental polling: no loss, no duplicates, updates, restarts, deep paging (peers.md pain points 1-3, 9)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from agent.simulator.server import GraphSimulator, Seen, backdate
from agent.timestamps import format_dt, sort_key
from tests.graph.conftest import SimFactory
from tests.graph.harness import Harness, expected_versions, source_table
from tests.support.wait import until

DATA = Path(__file__).parent.parent / "data" / "graph"


def graph_filters(sim: GraphSimulator) -> list[str]:
    return [r.query.get("$filter", "") for r in sim.graph_requests() if "$filter" in r.query]


class TestExactlyOnce:
    async def test_multi_page_backlog_delivered_exactly_once(
        self, make_sim: SimFactory, harness: Harness, ca: Path
    ) -> None:
        """A backlog over many pages arrives once per version, and the cursor lands on the newest one."""
        sim = await make_sim()
        for k in range(95):
            sim.add_alerts(1, when=backdate(120 - k))
        harness.strict["sim"] = sim
        harness.start(source_table(sim, ca, poll_interval_secs=30))
        await harness.wait_delivered(expected_versions(sim))
        await until(lambda: harness.cursor("sim/alerts_v2/all") is not None, 5, "cursor commit")
        assert max(harness.versions().values()) == 1
        assert harness.cursor("sim/alerts_v2/all") == max(
            (a["lastUpdateDateTime"] for a in sim.alerts.values()), key=sort_key
        )
        assert harness.violations == []
        # One poll, ten pages: the newest page of the window, then the newest page of what is left
        # (10 new alerts plus the one at the cut), each a fresh query with its count; no offsets.
        reqs = sim.graph_requests()
        assert len(reqs) == 10
        assert [r.query["$top"] for r in reqs] == ["10"] + ["11"] * 9
        assert all(r.query.get("$count") == "true" and "$skiptoken" not in r.query for r in reqs)

    async def test_every_request_prefers_unknown_enums_and_carries_a_client_request_id(
        self, make_sim: SimFactory, harness: Harness, ca: Path
    ) -> None:
        """Prefer: include-unknown-enum-members and a unique client-request-id on every Graph request."""
        sim = await make_sim()
        sim.add_alerts(25)
        harness.start(source_table(sim, ca))
        await harness.wait_delivered(expected_versions(sim))
        reqs = sim.graph_requests()
        assert all(r.headers.get("Prefer") == "include-unknown-enum-members" for r in reqs)
        ids = [r.headers.get("client-request-id") for r in reqs]
        assert None not in ids and len(set(ids)) == len(ids)

    async def test_unknown_enums_and_evidence_types_pass_through_untouched(
        self, make_sim: SimFactory, harness: Harness, ca: Path
    ) -> None:
        """An official sample plus future enum members and evidence types arrive byte-for-byte."""
        sim = await make_sim()
        sample = orjson.loads((DATA / "alerts_v2_list_response.json").read_bytes())["value"][0]
        sample["lastUpdateDateTime"] = format_dt(datetime.now(UTC)).replace("0Z", "3Z")
        sample["serviceSource"] = "microsoftSomethingNew"
        sample["evidence"].append(
            {"@odata.type": "#microsoft.graph.security.aiAgentEvidence", "x": [1, {"y": None}]}
        )
        sim.alerts[sample["id"]] = sample
        harness.start(source_table(sim, ca))
        await harness.wait_delivered({(sample["id"], sample["lastUpdateDateTime"])})
        assert orjson.dumps(harness.items[0]) == orjson.dumps(sample)

    async def test_same_timestamp_across_page_boundary_is_not_lost(
        self, make_sim: SimFactory, harness: Harness, ca: Path
    ) -> None:
        """Pain point 1 (">" on a shared timestamp): 25 alerts share one timestamp over 3 pages; all arrive."""
        sim = await make_sim()
        when = backdate(30)
        sim.add_alerts(25, when=when)
        harness.strict["sim"] = sim
        harness.start(source_table(sim, ca))
        await harness.wait_delivered(expected_versions(sim))
        # The next polls use "ge" (never "gt") and still deliver nothing twice.
        polls = len(sim.graph_requests())
        await until(lambda: len(sim.graph_requests()) >= polls + 6, 5, "more polls")
        assert all(" ge " in f and " gt " not in f for f in graph_filters(sim))
        assert max(harness.versions().values()) == 1
        more = sim.add_alerts(3, when=when)  # same timestamp as the cursor, arriving later
        await harness.wait_delivered({(a["id"], a["lastUpdateDateTime"]) for a in more})
        assert max(harness.versions().values()) == 1
        assert harness.violations == []


class TestInitialLookback:
    async def test_first_run_starts_initial_lookback_secs_back(
        self, make_sim: SimFactory, harness: Harness, ca: Path
    ) -> None:
        """Pain point 15: without a checkpoint the first window starts initial_lookback_secs ago (configurable)."""
        sim = await make_sim()
        old = sim.add_alerts(3, when=backdate(7200))
        recent = sim.add_alerts(4, when=backdate(1800))
        harness.start(source_table(sim, ca, initial_lookback_secs=3600, overlap_secs=0))
        await harness.wait_delivered({(a["id"], a["lastUpdateDateTime"]) for a in recent})
        polls = len(sim.graph_requests())
        await until(lambda: len(sim.graph_requests()) >= polls + 3, 5, "more polls")
        assert not {a["id"] for a in old} & {i for i, _ in harness.versions()}
        first = graph_filters(sim)[0].removeprefix("lastUpdateDateTime ge ")
        age = (datetime.now(UTC) - datetime.fromisoformat(first[:26] + "+00:00")).total_seconds()
        assert 3595 < age < 3610


class TestLateIngestion:
    async def test_missed_alerts_from_ingestion_delay_are_picked_up_by_the_overlap(
        self, make_sim: SimFactory, harness: Harness, ca: Path
    ) -> None:
        """Pain point 1: an alert stamped before the cursor but listed only later is still delivered."""
        sim = await make_sim()
        sim.add_alerts(5)
        late = sim.add_alerts(3, when=backdate(120), hidden=True)
        harness.start(source_table(sim, ca, overlap_secs=300))
        await harness.wait_delivered(expected_versions(sim))
        cursor = harness.cursor("sim/alerts_v2/all")
        assert cursor is not None
        assert all(sort_key(a["lastUpdateDateTime"]) < sort_key(cursor) for a in late)
        for a in late:
            sim.publish(a["id"])
        await harness.wait_delivered(expected_versions(sim))
        assert max(harness.versions().values()) == 1

    async def test_alert_published_during_pagination_is_not_lost(
        self, make_sim: SimFactory, harness: Harness, ca: Path
    ) -> None:
        """An alert ingested while a multi-page poll runs (newest first) shifts pages; nothing is lost."""
        sim = await make_sim()
        sim.add_alerts(40, when=backdate(60))
        arrivals: list[dict[str, Any]] = []

        def mid_poll(s: GraphSimulator, seen: Seen) -> None:
            if seen.query.get("$skiptoken") == "10" and len(arrivals) < 3:
                arrivals.extend(s.add_alerts(1))
                arrivals.extend(s.add_alerts(1, when=backdate(30)))

        sim.hooks.append(mid_poll)
        harness.start(source_table(sim, ca))
        await until(lambda: len(arrivals) >= 2, 5, "arrivals during paging")
        await harness.wait_delivered(expected_versions(sim))
        assert max(harness.versions().values()) == 1


class TestUpdates:
    async def test_updates_forwarded_once_per_version(
        self, make_sim: SimFactory, harness: Harness, ca: Path
    ) -> None:
        """Pain point 3 (policy "all"): each new lastUpdateDateTime is one more event; none repeats."""
        sim = await make_sim()
        made = sim.add_alerts(12, when=backdate(60))
        harness.strict["sim"] = sim
        harness.start(source_table(sim, ca))
        await harness.wait_delivered(expected_versions(sim))
        for round_ in range(2):
            for a in made[:4]:
                sim.update(a["id"], when=datetime.now(UTC) + timedelta(milliseconds=round_))
            await harness.wait_delivered(expected_versions(sim))
        versions = harness.versions()
        assert len(versions) == 12 + 8
        assert max(versions.values()) == 1
        assert harness.violations == []

    async def test_update_during_pagination_is_delivered_and_nothing_skipped(
        self, make_sim: SimFactory, harness: Harness, ca: Path
    ) -> None:
        """An alert updated between two page requests moves to the top; no other alert is skipped."""
        sim = await make_sim()
        made = sim.add_alerts(35, when=backdate(90))
        done: list[str] = []

        def mid_poll(s: GraphSimulator, seen: Seen) -> None:
            if seen.query.get("$skiptoken") == "20" and not done:
                done.append(s.update(made[-1]["id"])["lastUpdateDateTime"])

        sim.hooks.append(mid_poll)
        harness.start(source_table(sim, ca))
        await until(lambda: bool(done), 5, "update during paging")
        await harness.wait_delivered(expected_versions(sim))
        assert {i for i, _ in harness.versions()} == set(sim.alerts)
        assert max(harness.versions().values()) == 1

    async def test_forward_first_sends_each_alert_once_even_after_the_overlap(
        self, make_sim: SimFactory, harness: Harness, ca: Path
    ) -> None:
        """Pain point 3 (policy "first"): later updates never produce a second event, however late."""
        sim = await make_sim()
        made = sim.add_alerts(6, when=backdate(3000))
        harness.start(source_table(sim, ca, forward_updates="first", overlap_secs=5))
        await until(lambda: len(harness.delivered) == 6, 5, "first versions")
        polls = len(sim.graph_requests())
        for a in made:
            sim.update(a["id"])
        await until(lambda: len(sim.graph_requests()) >= polls + 5, 5, "polls after updates")
        assert len(harness.delivered) == 6
        assert all("createdDateTime ge " in f for f in graph_filters(sim))


class TestCheckpoint:
    async def test_cursor_never_passes_unacknowledged_batches(
        self, make_sim: SimFactory, tmp_path: Path, ca: Path
    ) -> None:
        """Until the pipeline acknowledges, the checkpoint holds nothing; then it moves to the newest."""
        sim = await make_sim()
        sim.add_alerts(30)
        h = Harness(tmp_path / "state", auto_ack=False)
        h.strict["sim"] = sim
        try:
            h.start(source_table(sim, ca))
            await until(lambda: len(h.held) >= 3, 5, "batches held")
            assert h.store.streams == {}
            h.ack_held()
            await until(lambda: h.cursor("sim/alerts_v2/all") is not None, 5, "cursor")
            assert h.violations == []
        finally:
            await h.close()

    async def test_restart_resumes_without_duplicates(
        self, make_sim: SimFactory, tmp_path: Path, ca: Path
    ) -> None:
        """Pain point 2 (state not persisted): a restarted source re-reads the overlap and forwards nothing twice."""
        sim = await make_sim()
        sim.add_alerts(22)
        first = Harness(tmp_path / "state")
        try:
            first.start(source_table(sim, ca))
            await first.wait_delivered(expected_versions(sim))
            await until(lambda: first.cursor("sim/alerts_v2/all") is not None, 5, "cursor")
        finally:
            await first.close()
        first.store.save()
        sim.add_alerts(4)
        second = Harness(tmp_path / "state")
        try:
            second.start(source_table(sim, ca))
            await until(lambda: len(second.delivered) >= 4, 5, "new alerts after restart")
            polls = len(sim.graph_requests())
            await until(lambda: len(sim.graph_requests()) >= polls + 4, 5, "more polls")
        finally:
            await second.close()
        assert set(first.versions()) | set(second.versions()) == expected_versions(sim)
        assert not set(first.versions()) & set(second.versions())
        assert len(second.delivered) == 4

    async def test_cursor_keeps_seven_fractional_digits(
        self, make_sim: SimFactory, harness: Harness, ca: Path
    ) -> None:
        """The cursor is Graph's raw string: the 7th fractional digit survives into the next $filter."""
        sim = await make_sim()
        alert = sim.add_alerts(1, when=backdate(10))[0]
        alert["lastUpdateDateTime"] = alert["lastUpdateDateTime"][:-2] + "7Z"
        harness.start(source_table(sim, ca, overlap_secs=0))
        await until(
            lambda: harness.cursor("sim/alerts_v2/all") == alert["lastUpdateDateTime"], 5, "raw cursor"
        )
        polls = len(sim.graph_requests())
        await until(lambda: len(sim.graph_requests()) > polls, 5, "next poll")
        assert graph_filters(sim)[-1] == f"lastUpdateDateTime ge {alert['lastUpdateDateTime']}"

    async def test_seen_keys_are_bounded_and_evictions_counted(
        self, make_sim: SimFactory, harness: Harness, ca: Path
    ) -> None:
        """The dedup memory is capped (max_seen_ids); evictions are counted, never silent."""
        sim = await make_sim()
        for k in range(150):
            sim.add_alerts(1, when=backdate(200 - k))
        harness.start(source_table(sim, ca, max_seen_ids=100, page_size=50))
        await harness.wait_delivered(expected_versions(sim))
        await until(
            lambda: harness.metric("siem_agent_graph_seen_evicted_total", stream="sim/alerts_v2/all") > 0, 5
        )
        await until(
            lambda: len(harness.store.streams["sim/alerts_v2/all"].seen) <= 100, 5, "pruned checkpoint"
        )


class TestDeepWindows:
    async def test_a_deep_window_costs_one_request_per_page_and_no_offsets(
        self, make_sim: SimFactory, harness: Harness, ca: Path
    ) -> None:
        """Pain point 9: 120 alerts in pages of 10 (max_pages_per_window 3): 12 requests, none deep."""
        sim = await make_sim()
        for k in range(120):
            sim.add_alerts(1, when=backdate(1000 - 7 * k))
        sim.max_skip = 0  # Graph refusing every offset changes nothing: none is used
        harness.strict["sim"] = sim
        harness.start(source_table(sim, ca, max_pages_per_window=3, poll_interval_secs=30))
        await harness.wait_delivered(expected_versions(sim), timeout=15)
        await until(lambda: harness.cursor("sim/alerts_v2/all") is not None, 5, "cursor commit")
        assert max(harness.versions().values()) == 1
        reqs = sim.graph_requests()
        assert len(reqs) == 12 and all(r.status == 200 for r in reqs)
        assert not any("$skiptoken" in r.query for r in reqs)
        assert harness.metric("siem_agent_alerts_fetched_total", stream="sim/alerts_v2/all") == 120 + 11
        assert harness.metric("siem_agent_graph_window_remaining", stream="sim/alerts_v2/all") == 0
        assert harness.violations == []

    async def test_more_alerts_at_one_instant_than_a_page_are_paged_through_that_instant(
        self, make_sim: SimFactory, harness: Harness, ca: Path
    ) -> None:
        """45 alerts sharing one timestamp among others: that one-tick window is paged by nextLink."""
        sim = await make_sim()
        for k in range(10):
            sim.add_alerts(1, when=backdate(100 - k))
        sim.add_alerts(45, when=backdate(50))
        for k in range(10):
            sim.add_alerts(1, when=backdate(40 - k))
        harness.strict["sim"] = sim
        harness.start(source_table(sim, ca))
        await harness.wait_delivered(expected_versions(sim), timeout=15)
        assert max(harness.versions().values()) == 1
        assert any("$skiptoken" in r.query for r in sim.graph_requests())
        assert (
            harness.metric("siem_agent_graph_rereads_total", stream="sim/alerts_v2/all", reason="instant")
            >= 1
        )
        assert harness.violations == []

    async def test_cursor_commits_once_per_poll_after_everything_below_it(
        self, make_sim: SimFactory, tmp_path: Path, ca: Path
    ) -> None:
        """The cursor of a deep poll is committed once, at the end, behind every batch of the poll."""
        sim = await make_sim()
        for k in range(60):
            sim.add_alerts(1, when=backdate(600 - 9 * k))
        h = Harness(tmp_path / "state", auto_ack=False)
        h.strict["sim"] = sim
        try:
            h.start(source_table(sim, ca, poll_interval_secs=30))
            await until(lambda: len(h.held) == 6, 5, "six batches held")
            assert h.cursor("sim/alerts_v2/all") is None  # nothing acknowledged: nothing committed
            h.ack_held()
            await until(lambda: h.cursor("sim/alerts_v2/all") is not None, 5)
        finally:
            await h.close()
        cursors = [c.cursor for _, c in h.commits if c.cursor is not None]
        assert cursors == [max((a["lastUpdateDateTime"] for a in sim.alerts.values()), key=sort_key)]
        assert h.violations == []


class TestMovesWhileReading:
    """An alert that moves while a window is read is never skipped (the simulator's mid-pagination
    hooks change the data right after a page was served)."""

    @staticmethod
    def spread(sim: GraphSimulator, n: int, newest_age: float = 30.0) -> list[dict[str, Any]]:
        return [a for k in range(n) for a in sim.add_alerts(1, when=backdate(newest_age + 5 * (n - k)))]

    async def test_update_of_an_alert_not_read_yet_is_delivered(
        self, make_sim: SimFactory, harness: Harness, ca: Path
    ) -> None:
        """The oldest alerts are updated while the newest pages are read: they leave the part still to
        read and move to the top; their new versions arrive (next poll), and no other alert is skipped."""
        sim = await make_sim()
        made = self.spread(sim, 50)
        moved: list[str] = []

        def move(s: GraphSimulator, seen: Seen) -> None:
            if len(s.graph_requests()) in (2, 3) and len(moved) < 4:
                moved.extend(
                    s.update(a["id"])["lastUpdateDateTime"] for a in made[len(moved) : len(moved) + 2]
                )

        sim.hooks.append(move)
        harness.strict["sim"] = sim
        harness.start(source_table(sim, ca))
        await until(lambda: len(moved) == 4, 10, "updates while reading")
        await harness.wait_delivered(expected_versions(sim), timeout=15)
        assert {i for i, _ in harness.versions()} == set(sim.alerts)
        assert max(harness.versions().values()) == 1
        assert harness.violations == []

    async def test_update_of_an_alert_already_read_shifts_nothing(
        self, make_sim: SimFactory, harness: Harness, ca: Path
    ) -> None:
        """The newest alerts are updated after their page was read: nothing below them is skipped."""
        sim = await make_sim()
        made = self.spread(sim, 50)
        moved: list[str] = []

        def move(s: GraphSimulator, seen: Seen) -> None:
            if len(s.graph_requests()) == 2 and not moved:
                moved.extend(s.update(a["id"])["lastUpdateDateTime"] for a in made[-15:])

        sim.hooks.append(move)
        harness.strict["sim"] = sim
        harness.start(source_table(sim, ca))
        await until(lambda: bool(moved), 10, "updates while reading")
        await harness.wait_delivered(expected_versions(sim), timeout=15)
        assert len(harness.versions()) == 50 + 15 and max(harness.versions().values()) == 1
        assert harness.violations == []

    async def test_late_alert_published_below_the_part_read_is_delivered(
        self, make_sim: SimFactory, harness: Harness, ca: Path
    ) -> None:
        """An alert published mid-read with an old timestamp, inside the part still to read, arrives
        in the same poll; one published above the part read arrives with the next poll's overlap."""
        sim = await make_sim()
        self.spread(sim, 40)
        below = sim.add_alerts(1, when=backdate(220), hidden=True)[0]
        above = sim.add_alerts(1, when=backdate(32), hidden=True)[0]

        def publish(s: GraphSimulator, seen: Seen) -> None:
            if len(s.graph_requests()) == 2:
                s.publish(below["id"])
                s.publish(above["id"])

        sim.hooks.append(publish)
        harness.start(source_table(sim, ca))
        await until(lambda: below["id"] not in sim.hidden, 10, "published while reading")
        await harness.wait_delivered(expected_versions(sim), timeout=15)
        assert max(harness.versions().values()) == 1

    async def test_one_instant_paged_by_nextlink_survives_an_alert_leaving_it(
        self, make_sim: SimFactory, harness: Harness, ca: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Offset paging of a one-tick window skips an item when another leaves it; the count catches it."""
        sim = await make_sim()
        same = sim.add_alerts(35, when=backdate(90))
        fired: list[str] = []

        def leave(s: GraphSimulator, seen: Seen) -> None:
            if seen.query.get("$skiptoken") == "10" and not fired:  # the instant's second page
                fired.append(s.update(same[-1]["id"])["id"])  # newest of the instant: read already

        sim.hooks.append(leave)
        harness.strict["sim"] = sim
        harness.start(source_table(sim, ca))
        await harness.wait_delivered(expected_versions(sim), timeout=15)
        assert fired
        assert "fewer items than counted" in caplog.text
        assert {i for i, _ in harness.versions()} == set(sim.alerts)
        assert harness.violations == []
