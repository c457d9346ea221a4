"""The simulator's write side follows Graph: roles, enums, 404s, error bodies, versions, comments, faults."""

from __future__ import annotations

import orjson

from agent.simulator.server import Fault, throttled
from agent.simulator.writes import WriteFault
from agent.sources.graph.writes import COMMENT_TYPE
from agent.timestamps import sort_key
from tests.support.simulator import SimEnv
from tests.writeback.helpers import app_token, graph

ALERTS = "/v1.0/security/alerts_v2"


class TestSimulatorWrites:
    async def test_patch_returns_the_updated_alert_with_a_later_version(self, graph_sim: SimEnv) -> None:
        """200 + the whole alert; lastUpdateDateTime moves forward; resolved sets resolvedDateTime."""
        sim, ca = graph_sim.sim, graph_sim.tls.ca_cert
        alert = sim.add_alerts(1)[0]
        body = {
            "status": "resolved",
            "classification": "truePositive",
            "determination": "malware",
            "assignedTo": "a@b",
        }
        status, doc = await graph(sim, ca, "PATCH", f"{ALERTS}/{alert['id']}", body)
        assert status == 200 and {k: doc[k] for k in body} == body
        assert sort_key(doc["lastUpdateDateTime"]) > sort_key(alert["lastUpdateDateTime"])
        assert doc["resolvedDateTime"] == doc["lastUpdateDateTime"] and doc["evidence"] == alert["evidence"]
        assert sim.alerts[alert["id"]] == doc and len(sim.writes.applied) == 1
        again_status, again = await graph(sim, ca, "PATCH", f"{ALERTS}/{alert['id']}", body)
        assert again_status == 200 and again["lastUpdateDateTime"] == doc["lastUpdateDateTime"], (
            "no change, no new version"
        )

    async def test_comments_return_the_full_list_and_bump_the_version(self, graph_sim: SimEnv) -> None:
        sim, ca = graph_sim.sim, graph_sim.tls.ca_cert
        alert = sim.add_alerts(1)[0]
        path = f"{ALERTS}/{alert['id']}/comments"
        await graph(sim, ca, "POST", path, {"@odata.type": COMMENT_TYPE, "comment": "first"})
        status, doc = await graph(sim, ca, "POST", path, {"@odata.type": COMMENT_TYPE, "comment": "second"})
        assert status == 200 and [c["comment"] for c in doc["value"]] == ["first", "second"]
        assert set(doc["value"][1]) == {"comment", "createdByDisplayName", "createdDateTime"}
        assert sim.alerts[alert["id"]]["lastUpdateDateTime"] == doc["value"][1]["createdDateTime"]
        _, got = await graph(sim, ca, "GET", f"{ALERTS}/{alert['id']}")
        assert [c["comment"] for c in got["comments"]] == ["first", "second"]

    async def test_refusals_have_graphs_shape(self, graph_sim: SimEnv) -> None:
        """400 for bad enums and read-only properties, 404 for unknown ids, 403 without the role."""
        sim, ca = graph_sim.sim, graph_sim.tls.ca_cert
        alert = sim.add_alerts(1)[0]
        incident = sim.add_incidents(1)[0]
        status, doc = await graph(sim, ca, "PATCH", f"{ALERTS}/{alert['id']}", {"status": "closed"})
        assert status == 400 and doc["error"]["code"] == "BadRequest" and "closed" in doc["error"]["message"]
        assert doc["error"]["innerError"]["request-id"]
        status, doc = await graph(sim, ca, "PATCH", f"{ALERTS}/{alert['id']}", {"title": "x"})
        assert status == 400 and "cannot be updated" in doc["error"]["message"]
        status, doc = await graph(sim, ca, "PATCH", f"{ALERTS}/nope", {"status": "resolved"})
        assert status == 404 and doc["error"]["code"] == "NotFound"
        status, doc = await graph(
            sim, ca, "PATCH", f"/v1.0/security/incidents/{incident['id']}", {"customTags": ["a"]}
        )
        assert status == 200 and doc["customTags"] == ["a"]
        sim.roles = ["SecurityAlert.Read.All", "SecurityIncident.Read.All"]
        token = await app_token(sim, ca)
        status, doc = await graph(sim, ca, "PATCH", f"{ALERTS}/{alert['id']}", {"status": "resolved"}, token)
        assert status == 403 and "SecurityAlert.ReadWrite.All" in doc["error"]["message"]
        assert (await graph(sim, ca, "GET", f"{ALERTS}/{alert['id']}", token=token))[0] == 200
        assert sim.alerts[alert["id"]]["status"] == "new" and len(sim.writes.applied) == 1

    async def test_throttling_and_write_faults_apply_to_writes(self, graph_sim: SimEnv) -> None:
        """throttle() answers writes 429 too; WriteFault(apply=True) applies and still answers the fault."""
        sim, ca = graph_sim.sim, graph_sim.tls.ca_cert
        alert = sim.add_alerts(1)[0]
        sim.throttle(5)
        status, doc = await graph(sim, ca, "PATCH", f"{ALERTS}/{alert['id']}", {"status": "resolved"})
        assert status == 429 and doc["error"]["code"] == "TooManyRequests"
        sim.throttle(0)
        sim.writes.faults.append(
            WriteFault(Fault(504, orjson.dumps({"error": {"code": "gatewayTimeout"}})), apply=True)
        )
        sim.writes.faults.append(WriteFault(throttled("1")))
        status, _ = await graph(sim, ca, "PATCH", f"{ALERTS}/{alert['id']}", {"status": "resolved"})
        assert status == 504 and sim.alerts[alert["id"]]["status"] == "resolved"
        status, _ = await graph(sim, ca, "PATCH", f"{ALERTS}/{alert['id']}", {"status": "new"})
        assert status == 429 and sim.alerts[alert["id"]]["status"] == "resolved"
        assert [a.body for a in sim.writes.applied] == [{"status": "resolved"}]
