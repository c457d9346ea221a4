"""The simulator's synthetic backlog (benchmarks): Graph's listing semantics without stored alerts."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import orjson
import pytest

from agent.simulator.backlog import SyntheticBacklog
from agent.simulator.server import backdate
from agent.timestamps import sort_key
from tests.graph.conftest import SimFactory
from tests.graph.harness import Harness, source_table


def _listed(backlog: SyntheticBacklog, text: str, top: int = 10_000) -> list[dict[str, object]]:
    body, total = backlog.page(text, 0, top)
    items: list[dict[str, object]] = orjson.loads(body)
    assert len(items) == min(total, top)
    return items


class TestSyntheticBacklog:
    def test_time_bounds_select_exactly_like_the_stored_alerts_filter(self) -> None:
        """ge/gt/le/lt on either time field pick the same alerts a per-alert filter would, newest first."""
        b = SyntheticBacklog(300, backdate(600), 0.5, "t")
        every = [b.alert(i) for i in range(300)]
        mid, low = b.timestamp(200), b.timestamp(20)
        for text, keep in [
            (f"lastUpdateDateTime ge {mid}", lambda k: k >= sort_key(mid)),
            (f"lastUpdateDateTime gt {mid}", lambda k: k > sort_key(mid)),
            (f"createdDateTime lt {mid}", lambda k: k < sort_key(mid)),
            (f"createdDateTime le {mid}", lambda k: k <= sort_key(mid)),
            (
                f"lastUpdateDateTime ge {low} and lastUpdateDateTime lt {mid}",
                lambda k: sort_key(low) <= k < sort_key(mid),
            ),
        ]:
            want = [a["id"] for a in reversed(every) if keep(sort_key(str(a["lastUpdateDateTime"])))]
            assert [a["id"] for a in _listed(b, text)] == want, text

    def test_pages_tile_the_backlog_without_gaps_or_repeats(self) -> None:
        b = SyntheticBacklog(1234, backdate(600), 0.1, "t")
        seen: list[object] = []
        for skip in range(0, 1300, 100):
            body, total = b.page("lastUpdateDateTime ge 2000-01-01T00:00:00Z", skip, 100)
            seen += [a["id"] for a in orjson.loads(body)]
            assert total == 1234
        assert len(seen) == len(set(seen)) == 1234

    def test_refuses_what_it_cannot_answer(self) -> None:
        b = SyntheticBacklog(10, backdate(60), 1.0, "t")
        with pytest.raises(ValueError, match="only filters on time"):
            b.page("serviceSource eq 'microsoftDefenderForEndpoint'", 0, 10)
        with pytest.raises(ValueError):
            b.page("title eq 'x'", 0, 10)


async def test_the_source_reads_a_backlog_once_through_window_splits(
    make_sim: SimFactory, harness: Harness, ca: Path
) -> None:
    """The real source over a served backlog deeper than one window: every alert once, cursor at the newest."""
    sim = await make_sim()
    sim.backlog = SyntheticBacklog(700, backdate(300), 0.25, sim.tenant_id)
    harness.start(source_table(sim, ca, page_size=50, max_pages_per_window=4))
    want = {(sim.backlog.alert(i)["id"], sim.backlog.timestamp(i)) for i in range(700)}
    await harness.wait_delivered(want, timeout=30)
    assert max(harness.versions().values()) == 1
    assert harness.violations == []
    assert any("$count" in r.query for r in sim.graph_requests())  # it did split


def test_backlog_spacing_is_exact() -> None:
    start = backdate(10)
    b = SyntheticBacklog(3, start, 0.5, "t")
    first = sort_key(b.timestamp(0))
    assert sort_key(b.timestamp(2)) > sort_key(b.timestamp(1)) > first
    assert b.timestamp(0)[:19] == (start - timedelta(microseconds=start.microsecond)).strftime(
        "%Y-%m-%dT%H:%M:%S"
    )
