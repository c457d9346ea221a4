"""Streams: one per serviceSource, concurrently, and the optional incidents stream (pain point 4)."""

from __future__ import annotations

from pathlib import Path

from tests.graph.conftest import SimFactory
from tests.graph.harness import Harness, expected_versions, source_table
from tests.support.wait import until

SOURCES = ["microsoftDefenderForEndpoint", "microsoftDefenderForIdentity", "microsoftDefenderForOffice365"]


class TestStreams:
    async def test_each_service_source_stream_gets_only_its_alerts_once(
        self, make_sim: SimFactory, harness: Harness, ca: Path
    ) -> None:
        """Per-serviceSource streams filter server-side, run concurrently and keep separate cursors."""
        sim = await make_sim()
        sim.add_alerts(60)
        harness.strict["sim"] = sim
        harness.start(source_table(sim, ca, service_sources=SOURCES))
        for s in SOURCES:
            await harness.wait_delivered(expected_versions(sim, s), prefix=f"sim/alerts_v2/{s}")
            got = {i for (i, _v) in harness.versions(f"sim/alerts_v2/{s}")}
            assert all(sim.alerts[i]["serviceSource"] == s for i in got)
        await until(lambda: all(harness.cursor(f"sim/alerts_v2/{s}") for s in SOURCES), 5, "cursors")
        assert max(harness.versions().values()) == 1
        filters = {r.query["$filter"] for r in sim.graph_requests() if "$filter" in r.query}
        assert all(any(f"serviceSource eq '{s}'" in f for f in filters) for s in SOURCES)
        assert harness.violations == []

    async def test_incidents_stream_without_expand_by_default(
        self, make_sim: SimFactory, harness: Harness, ca: Path
    ) -> None:
        """incidents = true polls /security/incidents on lastUpdateDateTime; updates arrive once each."""
        sim = await make_sim()
        sim.add_alerts(4)
        made = sim.add_incidents(12)
        harness.start(source_table(sim, ca, incidents=True, incidents_page_size=5))
        want = {(i["id"], i["lastUpdateDateTime"]) for i in sim.incidents.values()}
        await harness.wait_delivered(want, prefix="sim/incidents/all")
        sim.update_incident(made[0]["id"])
        want = {(i["id"], i["lastUpdateDateTime"]) for i in sim.incidents.values()}
        await harness.wait_delivered(want, prefix="sim/incidents/all")
        assert len(harness.versions("sim/incidents/all")) == 13
        incident_reqs = [r for r in sim.graph_requests() if r.path.endswith("/incidents")]
        assert all("$expand" not in r.query for r in incident_reqs)
        # Each poll opens with the newest page of incidents_page_size (later pages add the items at the cut).
        opening = [r for r in incident_reqs if " lt " not in r.query.get("$filter", "")]
        assert opening and all(r.query.get("$top") == "5" for r in opening)
        await harness.wait_delivered(expected_versions(sim), prefix="sim/alerts_v2/all")

    async def test_incidents_expand_alerts_when_asked(
        self, make_sim: SimFactory, harness: Harness, ca: Path
    ) -> None:
        """incidents_expand_alerts = true adds $expand=alerts and passes the embedded alerts through."""
        sim = await make_sim()
        alerts = sim.add_alerts(2)
        incident = sim.add_incidents(1)[0]
        for a in alerts:
            a["incidentId"] = incident["id"]
        harness.start(source_table(sim, ca, incidents=True, incidents_expand_alerts=True))
        await harness.wait_delivered(
            {(incident["id"], incident["lastUpdateDateTime"])}, prefix="sim/incidents/"
        )
        got = next(i for i in harness.items if i["id"] == incident["id"])
        assert {a["id"] for a in got["alerts"]} == {a["id"] for a in alerts}
