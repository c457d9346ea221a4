"""Graph (or a liar in its place) answering outside the protocol: the source refuses, says so once per
failed poll, keeps running, and keeps delivering everything else (issue #14, "hostile responses").

Each case runs two tenants: the one whose simulator misbehaves, and a healthy one whose alerts must
keep arriving. Where the token could leak, a second HTTPS server on 127.0.0.1 stands in for the
foreign host and must never see a request.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import tracemalloc
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from agent.simulator.server import Fault, GraphSimulator, backdate
from tests.graph.conftest import SimFactory
from tests.graph.harness import Harness, expected_versions, source_table
from tests.support.wait import until

GOOD = "11111111-0000-4000-8000-00000000000a"
BAD = "22222222-0000-4000-8000-00000000000b"


def errors(caplog: pytest.LogCaptureFixture, stream: str) -> list[str]:
    """The error fields of "Poll failed" lines of one stream."""
    return [
        str(getattr(r, "error", ""))
        for r in caplog.records
        if r.getMessage() == "Poll failed; backing off." and getattr(r, "stream", "") == stream
    ]


def _status_kib(field: str) -> int:
    """One ``kB`` field of this process's /proc/self/status."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/self/status")


@contextlib.contextmanager
def peak_growth_mib() -> Iterator[list[float]]:
    """How far this process's memory peaked above what it held on entry, during the block (MiB, appended
    to the yielded list on exit). The peak (VmHWM) is reset to the current RSS first, so an earlier,
    bigger peak of the pytest process cannot hide growth; where clear_refs is refused, the peak of
    Python allocations made in the block (tracemalloc) stands in."""
    out: list[float] = []
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: VmHWM := VmRSS
    except PermissionError:
        tracemalloc.start()
        try:
            yield out
            out.append(tracemalloc.get_traced_memory()[1] / (1 << 20))
        finally:
            tracemalloc.stop()
        return
    before = _status_kib("VmRSS")
    yield out
    out.append((_status_kib("VmHWM") - before) / 1024)


async def two_tenants(
    make_sim: SimFactory, harness: Harness, ca: Path, **bad: Any
) -> tuple[GraphSimulator, GraphSimulator]:
    good = await make_sim(tenant_id=GOOD)
    liar = await make_sim(tenant_id=BAD)
    good.add_alerts(12, when=backdate(60))
    harness.start(source_table(good, ca, name="good"))
    harness.start(source_table(liar, ca, name="bad", **bad))
    return good, liar


async def still_delivering(harness: Harness, good: GraphSimulator) -> None:
    """The healthy tenant delivered its backlog and keeps polling: a new alert arrives too."""
    await harness.wait_delivered(expected_versions(good), prefix="good/")
    more = good.add_alerts(2)
    await harness.wait_delivered({(a["id"], a["lastUpdateDateTime"]) for a in more}, prefix="good/")
    assert all(not t.done() for t in harness._tasks)


class TestNextLinks:
    @pytest.mark.parametrize("scheme", ["https", "http"])
    async def test_a_nextlink_to_another_origin_is_never_followed(
        self, make_sim: SimFactory, harness: Harness, ca: Path, caplog: pytest.LogCaptureFixture, scheme: str
    ) -> None:
        """A nextLink naming another port (https) or plain http: refused, the token never goes there."""
        caplog.set_level(logging.INFO)
        foreign = await make_sim()
        good, liar = await two_tenants(make_sim, harness, ca)
        liar.add_alerts(25, when=backdate(30))  # one instant, more than a page: paged by nextLink
        elsewhere = foreign.base_url if scheme == "https" else liar.base_url.replace("https:", "http:")
        liar.rewrite_next_link = lambda link: link.replace(liar.base_url, elsewhere)
        await until(lambda: len(errors(caplog, "bad/alerts_v2/all")) >= 2, 10, "refused twice")
        await still_delivering(harness, good)
        assert foreign.requests == []
        line = errors(caplog, "bad/alerts_v2/all")[0]
        assert "outside the configured Graph root" in line and "not followed" in line
        assert "$skiptoken" not in line  # origin and path only
        leaked = liar.client_secret in caplog.text
        assert not leaked, "the client secret leaked into the log"
        assert not any("Bearer" in r.getMessage() + str(r.__dict__) for r in caplog.records)
        assert (
            harness.metric("siem_agent_poll_errors_total", stream="bad/alerts_v2/all", reason="request") >= 2
        )

    async def test_a_repeated_nextlink_stops_paging(
        self, make_sim: SimFactory, harness: Harness, ca: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A server answering every page with the same nextLink: the second time, the poll stops."""
        good, liar = await two_tenants(make_sim, harness, ca)
        liar.add_alerts(25, when=backdate(30))
        first: list[str] = []

        def same(link: str) -> str:
            first.append(first[0] if first else link)
            return first[0]

        liar.rewrite_next_link = same
        await until(lambda: len(errors(caplog, "bad/alerts_v2/all")) >= 2, 10, "stopped twice")
        await still_delivering(harness, good)
        assert "sent before in the same chain" in errors(caplog, "bad/alerts_v2/all")[0]
        chained = [r for r in liar.graph_requests() if r.query.get("$skiptoken")]
        assert len(chained) <= 2 * len(errors(caplog, "bad/alerts_v2/all")) + 2  # not 100,000 pages

    async def test_a_redirect_is_not_followed(
        self, make_sim: SimFactory, harness: Harness, ca: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A 302 to another host: an error naming where it pointed (no query), and no request there."""
        foreign = await make_sim()
        good, liar = await two_tenants(make_sim, harness, ca)
        target = f"{foreign.base_url}/steal?token=shh"
        liar.faults.extend(Fault(302, b"", {"Location": target}) for _ in range(3))
        await until(lambda: bool(errors(caplog, "bad/alerts_v2/all")), 10, "refused")
        await still_delivering(harness, good)
        assert foreign.requests == []
        line = errors(caplog, "bad/alerts_v2/all")[0]
        assert "302 (redirect to https://127.0.0.1:" in line and "/steal" in line and "shh" not in line


class TestBodies:
    async def test_a_gzip_bomb_is_cut_at_max_response_bytes(
        self, make_sim: SimFactory, harness: Harness, ca: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """200 MB of JSON in 200 KB of gzip, with max_response_bytes 1 MiB: refused as transient, the
        process never holds the expansion, and the next answer is read normally."""
        good, liar = await two_tenants(make_sim, harness, ca, max_response_bytes=1 << 20, max_attempts=2)
        liar.add_alerts(5)
        packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        zeros = b"0" * (1 << 20)
        bomb = packer.compress(b'{"value": [], "x": "') + b"".join(packer.compress(zeros) for _ in range(200))
        bomb += packer.compress(b'"}') + packer.flush()
        assert len(bomb) < 400_000
        liar.faults.extend(Fault(200, bomb, {"Content-Encoding": "gzip"}) for _ in range(2))
        with peak_growth_mib() as grown:
            await until(lambda: bool(errors(caplog, "bad/alerts_v2/all")), 10, "refused")
        assert grown[0] < 64, f"peak memory grew {grown[0]:.0f} MiB while the bomb was refused"
        assert "expands beyond max_response_bytes" in errors(caplog, "bad/alerts_v2/all")[0]
        await harness.wait_delivered(expected_versions(liar), prefix="bad/")  # later answers are fine
        await still_delivering(harness, good)

    async def test_an_oversized_body_is_refused_before_it_is_read(
        self, make_sim: SimFactory, harness: Harness, ca: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A plain body over max_response_bytes: refused by its Content-Length; gzip bodies that stay
        within the limit are read like any other."""
        good, liar = await two_tenants(make_sim, harness, ca, max_response_bytes=64 << 10, max_attempts=1)
        liar.add_alerts(3, when=backdate(20))
        liar.faults.append(Fault(200, b'{"value": [], "x": "' + b"y" * (100 << 10) + b'"}'))
        await until(lambda: bool(errors(caplog, "bad/alerts_v2/all")), 10, "refused")
        assert "exceeds max_response_bytes" in errors(caplog, "bad/alerts_v2/all")[0]
        await harness.wait_delivered(expected_versions(liar), prefix="bad/")
        page = {"value": [dict(a, n=i) for i, a in enumerate(liar.add_alerts(2))]}
        liar.faults.append(Fault(200, gzip.compress(orjson.dumps(page)), {"Content-Encoding": "gzip"}))
        await harness.wait_delivered(
            {(a["id"], a["lastUpdateDateTime"]) for a in page["value"]}, prefix="bad/"
        )
        await still_delivering(harness, good)

    async def test_a_page_nested_ten_thousand_deep_is_a_malformed_page(
        self, make_sim: SimFactory, harness: Harness, ca: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """No RecursionError out of the client ("Poll crashed"): a transient malformed page, then recovery."""
        good, liar = await two_tenants(make_sim, harness, ca, max_attempts=2)
        liar.add_alerts(4)
        deep = b'{"value": [' + b"[" * 10_000 + b"]" * 10_000 + b"]}"
        liar.faults.extend(Fault(200, deep) for _ in range(2))
        await until(lambda: bool(errors(caplog, "bad/alerts_v2/all")), 10, "malformed")
        assert "nested too deeply" in errors(caplog, "bad/alerts_v2/all")[0]
        assert "Poll crashed" not in caplog.text
        await harness.wait_delivered(expected_versions(liar), prefix="bad/")
        await still_delivering(harness, good)


class TestItems:
    async def test_items_without_id_or_timestamp_are_dead_lettered_once(
        self, make_sim: SimFactory, harness: Harness, ca: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Listed on every poll, each is rejected once with its reason, and never forwarded."""
        good, liar = await two_tenants(make_sim, harness, ca)
        normal = liar.add_alerts(6, when=backdate(30))
        no_id = dict(normal[0], title="no id here")
        del no_id["id"]
        liar.alerts["no-id"] = no_id
        bad_ts = dict(normal[1], id="bad-ts", lastUpdateDateTime="yesterday")
        liar.alerts["bad-ts"] = bad_ts
        polls = len(liar.graph_requests())
        await until(lambda: len(liar.graph_requests()) >= polls + 6, 10, "several polls")
        await harness.wait_delivered({(a["id"], a["lastUpdateDateTime"]) for a in normal}, prefix="bad/")
        reasons = sorted(r for _, _, r in harness.rejected)
        assert reasons == ["no id", "no usable lastUpdateDateTime"]
        assert {i for i, _ in harness.versions("bad/")} == {a["id"] for a in normal}
        for reason in ("no_id", "no_timestamp"):
            assert (
                harness.metric("siem_agent_alerts_rejected_total", stream="bad/alerts_v2/all", reason=reason)
                == 1
            )
        rejected = [r for r in caplog.records if r.getMessage().startswith("Item without a usable id")]
        assert len(rejected) == 2
        await still_delivering(harness, good)
        # The checkpoint remembers them, so a restart does not dead-letter them again.
        assert {k for k in harness.store.streams["bad/alerts_v2/all"].seen if k.startswith("!")} == {
            "!bad-ts",
            next(k for k in harness.store.streams["bad/alerts_v2/all"].seen if k.startswith("!sha256:")),
        }

    async def test_an_item_dated_in_the_future_does_not_move_the_cursor_past_now(
        self, make_sim: SimFactory, harness: Harness, ca: Path
    ) -> None:
        """One alert stamped in 2100 is forwarded, but the cursor stays at now: later alerts still arrive."""
        good, liar = await two_tenants(make_sim, harness, ca)
        future = liar.add_alerts(1)[0]
        future["lastUpdateDateTime"] = "2100-01-01T00:00:00.0000000Z"
        await harness.wait_delivered({(future["id"], future["lastUpdateDateTime"])}, prefix="bad/")
        await until(lambda: harness.cursor("bad/alerts_v2/all") is not None, 5)
        cursor = harness.cursor("bad/alerts_v2/all")
        assert cursor is not None and cursor < "2100"
        later = liar.add_alerts(3)
        await harness.wait_delivered({(a["id"], a["lastUpdateDateTime"]) for a in later}, prefix="bad/")
        await still_delivering(harness, good)
