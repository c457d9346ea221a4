"""Delivery of one request to Graph (the simulator), each step exactly once, whatever Graph answers."""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from prometheus_client import CollectorRegistry

from agent.clock import SystemClock
from agent.metrics import AgentMetrics
from agent.simulator.server import Fault, throttled, unavailable
from agent.simulator.writes import WriteFault
from agent.sources.config import GraphSecuritySourceConfig
from agent.sources.graph.client import GraphClient
from agent.sources.graph.writes import GraphWrites
from agent.writeback.executor import Executor, RetryPolicy
from agent.writeback.journal import Journal
from agent.writeback.queue import RequestQueue, WriteRequest
from agent.writeback.updates import Update
from agent.writeback.versions import OwnVersions
from tests.support.simulator import SimEnv

POLICY = RetryPolicy(0.02, 0.1, max_attempts=5)


@dataclass
class Rig:
    env: SimEnv
    client: GraphClient
    queue: RequestQueue
    versions: OwnVersions
    tmp: Path

    def executor(self) -> Executor:
        writes = GraphWrites(self.client, self.env.base_url)
        return Executor(writes, self.queue, SystemClock(), self.versions)

    def submit(self, target: str, update: Update, entity: str = "alert") -> WriteRequest:
        return self.queue.submit("sim", entity, target, update, "splunk")  # type: ignore[arg-type]

    def restart(self) -> Rig:
        """The same state directory read by a new process."""
        self.queue.journal.close()
        queue = RequestQueue(Journal(self.tmp / "q.jsonl"), SystemClock(), 10, 3600)
        queue.load()
        return Rig(
            self.env, self.client, queue, OwnVersions(self.tmp / "v.jsonl", SystemClock(), 3600), self.tmp
        )


@pytest.fixture
async def rig(tmp_path: Path, graph_sim: SimEnv) -> AsyncIterator[Rig]:
    cfg = GraphSecuritySourceConfig(**graph_sim.source(request_timeout_secs=1.0, requests_per_minute=60_000))
    client = GraphClient.connect(cfg, SystemClock(), AgentMetrics(CollectorRegistry()))
    queue = RequestQueue(Journal(tmp_path / "q.jsonl"), SystemClock(), 10, 3600)
    queue.load()
    try:
        yield Rig(graph_sim, client, queue, OwnVersions(tmp_path / "v.jsonl", SystemClock(), 3600), tmp_path)
    finally:
        await client.aclose()


def applied(env: SimEnv, method: str | None = None) -> list[dict[str, object]]:
    return [a.body for a in env.sim.writes.applied if method in (None, a.method)]


class TestExecutor:
    async def test_comment_then_update_and_the_versions_they_produced(self, rig: Rig) -> None:
        """Comment first, then the PATCH; the PATCH's version is the alert's final one and is recorded."""
        alert = rig.env.sim.add_alerts(1)[0]
        req = rig.submit(alert["id"], Update({"status": "resolved"}, "closed in splunk"))
        assert await rig.executor().deliver(req, POLICY) is None
        assert [a.method for a in rig.env.sim.writes.applied] == ["POST", "PATCH"]
        final = rig.env.sim.alerts[alert["id"]]["lastUpdateDateTime"]
        assert req.versions[-1] == final and req.steps == {"comment": "sent", "update": "sent"}
        rig.versions.refresh()
        mark = rig.versions.lookup("sim", "alert", alert["id"], final)
        assert mark is not None and mark.request_id == req.id and mark.by == "splunk"

    async def test_a_comment_graph_applied_before_a_504_is_not_added_again(self, rig: Rig) -> None:
        """504 after Graph committed the comment: the alert is read back, the comment is there: done."""
        alert = rig.env.sim.add_alerts(1)[0]
        body = orjson.dumps({"error": {"code": "gatewayTimeout", "message": "x"}})
        rig.env.sim.writes.faults.append(WriteFault(Fault(504, body), apply=True))
        req = rig.submit(alert["id"], Update({}, "only once"))
        assert await rig.executor().deliver(req, POLICY) is None
        assert applied(rig.env, "POST") == [
            {"@odata.type": "microsoft.graph.security.alertComment", "comment": "only once"}
        ]
        assert [c["comment"] for c in rig.env.sim.alerts[alert["id"]]["comments"]] == ["only once"]

    async def test_an_answer_that_never_comes_is_checked_not_resent(self, rig: Rig) -> None:
        """Graph applies the PATCH and then holds the answer past request_timeout_secs: checked, once."""
        alert = rig.env.sim.add_alerts(1)[0]
        rig.env.sim.writes.faults.append(WriteFault(Fault(200, b"{}", delay_secs=30), apply=True))
        req = rig.submit(alert["id"], Update({"status": "inProgress", "assignedTo": "kim@contoso.com"}))
        assert await rig.executor().deliver(req, POLICY) is None
        assert applied(rig.env, "PATCH") == [{"status": "inProgress", "assignedTo": "kim@contoso.com"}]
        assert req.versions == [rig.env.sim.alerts[alert["id"]]["lastUpdateDateTime"]]

    async def test_after_a_crash_a_sending_step_is_checked_first(self, rig: Rig) -> None:
        """The journal says "sending": if Graph has the comment it is not sent again; if not, it is."""
        a, b = rig.env.sim.add_alerts(2)
        sent = rig.submit(a["id"], Update({}, "posted before the crash"))
        lost = rig.submit(b["id"], Update({}, "never reached Graph"))
        for req in (sent, lost):
            rig.queue.step(req, "comment", "sending")
        await rig.executor().writes.comment("alert", a["id"], "posted before the crash")
        after = rig.restart()
        for req_id in (sent.id, lost.id):
            req = after.queue.get(req_id)
            assert req is not None and req.steps == {"comment": "sending"}
            assert await after.executor().deliver(req, POLICY) is None
        comments = {k: [c["comment"] for c in rig.env.sim.alerts[k]["comments"]] for k in (a["id"], b["id"])}
        assert comments == {a["id"]: ["posted before the crash"], b["id"]: ["never reached Graph"]}

    async def test_a_429_storm_is_waited_out_and_the_write_lands_once(self, rig: Rig) -> None:
        """Queued 429s with Retry-After: nothing is sent before it passes; exactly one PATCH applied."""
        alert = rig.env.sim.add_alerts(1)[0]
        for _ in range(3):
            rig.env.sim.writes.faults.append(WriteFault(throttled("0.3")))
        req = rig.submit(alert["id"], Update({"status": "resolved"}))
        started = time.monotonic()
        assert await rig.executor().deliver(req, POLICY) is None
        writes = [r for r in rig.env.sim.writes.requests() if r.method == "PATCH"]
        assert [r.status for r in writes] == [429, 429, 429, 200]
        gaps = [b.at - a.at for a, b in itertools.pairwise(writes)]
        assert min(gaps) >= 0.29 and time.monotonic() - started >= 0.87
        assert applied(rig.env) == [{"status": "resolved"}]

    async def test_graph_refusals_come_back_with_code_message_and_request_id(self, rig: Rig) -> None:
        """404 and 403 are not retried: Graph's status, code, message and request-id are returned."""
        req = rig.submit("da000_missing", Update({"status": "resolved"}))
        refused = await rig.executor().deliver(req, POLICY)
        assert refused is not None and (refused.status, refused.code) == (404, "NotFound")
        assert "was not found" in refused.message and refused.request_id not in ("", "-")
        alert = rig.env.sim.add_alerts(1)[0]
        rig.env.sim.roles = ["SecurityAlert.Read.All"]
        rig.env.sim.expire_tokens()
        req = rig.submit(alert["id"], Update({"status": "resolved"}))
        refused = await rig.executor().deliver(req, POLICY)
        assert (
            refused is not None and refused.status == 403 and "SecurityAlert.ReadWrite.All" in refused.message
        )
        assert rig.env.sim.writes.applied == []

    async def test_send_times_are_forgotten_when_graph_refuses_a_request(self, rig: Rig) -> None:
        """The per-step send times kept between retries do not outlive a refused request."""
        executor = rig.executor()
        req = rig.submit("da000_missing", Update({"status": "resolved"}, "gone"))
        refused = await executor.deliver(req, POLICY)
        assert refused is not None and refused.status == 404
        assert executor._since == {}

    async def test_5xx_is_retried_with_backoff_and_checked(self, rig: Rig) -> None:
        """503s that applied nothing: checked (not there), sent again, applied once."""
        alert = rig.env.sim.add_alerts(1)[0]
        for _ in range(2):
            rig.env.sim.writes.faults.append(WriteFault(unavailable(503)))
        req = rig.submit(alert["id"], Update({"classification": "falsePositive"}))
        assert await rig.executor().deliver(req, POLICY) is None
        methods = [(r.method, r.status) for r in rig.env.sim.writes.requests()]
        assert methods == [("PATCH", 503), ("GET", 200), ("PATCH", 503), ("GET", 200), ("PATCH", 200)]
        assert applied(rig.env) == [{"classification": "falsePositive"}]
