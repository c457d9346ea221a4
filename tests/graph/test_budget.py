"""The request budget as Graph sees it: the simulator's own request log, tokens and retries included.

The agent and the simulator share a ``ScaledClock`` (a minute passes in two seconds), so minutes of a
60-requests-per-minute budget are checked in seconds: every 60-second window of the simulator's log
— OIDC discovery, token requests, Graph pages, 429s, 503s and their retries — holds at most
``requests_per_minute`` requests, and the backlog still arrives whole, once, near the minimum number
of requests (issue #14's scenario: 660 alerts in pages of 10 under 60/min with 429 and 503 faults).
"""

from __future__ import annotations

import math
from pathlib import Path

from agent.simulator.server import GraphSimulator, Seen, backdate, throttled, unavailable
from tests.graph.conftest import SimFactory
from tests.graph.harness import Harness, busiest_minute, expected_versions, source_table
from tests.support.clock import ScaledClock
from tests.support.wait import until

SCALE = 30.0
RPM = 60


def faults_after(plan: dict[int, object]) -> object:
    """A hook queueing ``plan[n]`` right after the n-th Graph page was served."""

    def hook(s: GraphSimulator, seen: Seen) -> None:
        fault = plan.pop(len(s.graph_requests()), None)
        if fault is not None:
            s.faults.append(fault)  # type: ignore[arg-type]

    return hook


async def test_backlog_under_a_60_per_minute_budget_with_faults(
    make_sim: SimFactory, tmp_path: Path, ca: Path
) -> None:
    """660 alerts, pages of 10, 60/min, 429s and 503s: all delivered once, well under five minutes, near
    the minimum of requests, and no minute at the simulator holds more than 60 requests of any kind."""
    clock = ScaledClock(SCALE)
    sim = await make_sim(monotonic=clock.monotonic)
    for k in range(660):
        sim.add_alerts(1, when=backdate(3000 - 4 * k))
    sim.hooks.append(
        faults_after(  # type: ignore[arg-type]
            {
                8: throttled("2"),
                20: unavailable(503),
                24: unavailable(503, retry_after="1"),
                35: throttled("3"),
                50: unavailable(504),
            }
        )
    )
    h = Harness(tmp_path / "state", clock=clock)
    h.strict["sim"] = sim
    started = clock.monotonic()
    try:
        h.start(source_table(sim, ca, requests_per_minute=RPM, poll_interval_secs=60, backoff_base_secs=0.5))
        await h.wait_delivered(expected_versions(sim), timeout=30)
        took = clock.monotonic() - started
        await until(lambda: h.cursor("sim/alerts_v2/all") is not None, 5, "cursor commit")
    finally:
        await h.close()
    assert max(h.versions().values()) == 1 and h.violations == []
    assert took < 150, f"{took:.0f} virtual seconds"  # the minimum is ~70 s of budget
    everything = [r.at for r in sim.requests]
    assert busiest_minute(everything) <= RPM
    graph = sim.graph_requests()
    faults = sum(r.status != 200 for r in graph)
    assert faults == 5
    minimum = math.ceil(660 / 10)
    assert len(graph) - faults <= minimum + 1, (len(graph), faults)
    assert len(sim.token_requests()) == 1


async def test_streams_and_incidents_share_one_exact_budget(
    make_sim: SimFactory, tmp_path: Path, ca: Path
) -> None:
    """Three serviceSource streams and incidents, each with a deep backlog, polling concurrently under
    one 60/min budget: no minute at the simulator holds more than 60 requests; everything arrives."""
    clock = ScaledClock(SCALE)
    sim = await make_sim(monotonic=clock.monotonic)
    for k in range(240):
        sim.add_alerts(1, when=backdate(2000 - 5 * k))
    sim.add_incidents(60, when=backdate(100))
    sources = ["microsoftDefenderForEndpoint", "microsoftDefenderForIdentity", "azureAdIdentityProtection"]
    h = Harness(tmp_path / "state", clock=clock)
    try:
        h.start(
            source_table(
                sim,
                ca,
                service_sources=sources,
                incidents=True,
                incidents_page_size=5,
                requests_per_minute=RPM,
                poll_interval_secs=0.2,
            )
        )
        for s in sources:
            await h.wait_delivered(expected_versions(sim, s), prefix=f"sim/alerts_v2/{s}", timeout=30)
        want = {(i["id"], i["lastUpdateDateTime"]) for i in sim.incidents.values()}
        await h.wait_delivered(want, prefix="sim/incidents/all", timeout=30)
        # Keep polling a while: steady polls spend the budget too.
        mark = clock.monotonic()
        await until(lambda: clock.monotonic() > mark + 90, 10, "90 more virtual seconds")
    finally:
        await h.close()
    assert busiest_minute([r.at for r in sim.requests]) <= RPM
    assert max(h.versions().values()) == 1
