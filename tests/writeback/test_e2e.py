"""Claim (issue #16): a write-back through the API or the CLI reaches Graph exactly once — across an agent
restart between the 202 and delivery, across a crash after Graph applied it, through a 429 storm —
within the tenant's budget, comes back through polling per the loop setting, and bad tokens, values and
sources get the documented codes with nothing sent to Graph. The real agent process (``siem-agent run``)
and the real CLI against the Graph simulator (HTTPS on 127.0.0.1, in this test process).

Runtime: about 20 s.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from agent.simulator.server import Fault, throttled
from agent.simulator.writes import WriteFault
from tests.ops.helpers import cli, env, write_toml
from tests.support.agent_process import (
    AgentProcess,
    agent_settings,
    fast_source,
    read_jsonl,
    write_config,
)
from tests.support.simulator import SimEnv
from tests.support.wait import until
from tests.writeback.helpers import TOKEN, api, wait_state

RPM = 120
BURST = RPM // 10
SERVING = "Serving the write-back API."


async def writeback_port(agent: AgentProcess) -> int:
    found: list[int] = []

    def serving() -> bool:
        if not agent.alive():
            raise AssertionError(f"agent exited:\n{agent.log_text(this_run=True)[-3000:]}")
        found[:] = [int(r["port"]) for r in agent.messages(SERVING, this_run=True)]
        return bool(found)

    await until(serving, 20, "the write-back API")
    return found[-1]


async def state(port: int, request_id: str) -> dict[str, Any]:
    return (await api(port, "GET", f"/v1/requests/{request_id}"))[1]


def all_graph_times(env_: SimEnv) -> list[float]:
    return sorted(r.at for r in env_.sim.requests if r.path.startswith("/v1.0/"))


class TestApiEndToEnd:
    async def test_exactly_once_through_restarts_crashes_and_a_429_storm(
        self, tmp_path: Path, graph_sim: SimEnv
    ) -> None:
        sim = graph_sim.sim
        a, b, c = sim.add_alerts(3)
        out = tmp_path / "out.jsonl"
        source = fast_source(graph_sim.source(), requests_per_minute=RPM, poll_interval_secs=0.05)
        sink = {
            "type": "file",
            "name": "file",
            "path": str(out),
            "codec": {"type": "json"},
            "batch": {"timeout_secs": 0.05},
        }
        wb = {"enabled": True, "port": 0, "tokens": [{"name": "sentinel", "token": TOKEN}]}
        settings = agent_settings(tmp_path / "state", [source], [sink], writeback=wb)
        agent = AgentProcess(write_config(tmp_path / "agent.toml", settings), tmp_path / "agent.log")
        try:
            agent.start()
            port = await writeback_port(agent)
            await until(lambda: len(read_jsonl(out)) == 3, 20, "the first versions")

            # Refusals from outside: documented codes, nothing sent to Graph.
            item = f"/v1/sources/sim/alerts/{a['id']}"
            codes = [
                (await api(port, "PATCH", item, {"status": "resolved"}, token="wrong"))[0],
                (await api(port, "PATCH", item, {"status": "resolved"}, token=None))[0],
                (await api(port, "PATCH", item, {"status": "done"}))[0],
                (await api(port, "PATCH", item, {"status": "resolved", "title": "x"}))[0],
                (await api(port, "PATCH", f"/v1/sources/nope/alerts/{a['id']}", {"status": "resolved"}))[0],
                (await api(port, "PATCH", item, {"comment": "x" * 20_000}))[0],
            ]
            assert codes == [401, 401, 400, 400, 404, 413]
            assert sim.writes.requests() == []

            # 1. Accepted while Graph throttles everything, agent killed before delivery, restarted.
            sim.throttle(60)
            _, first, _ = await api(
                port, "PATCH", item, {"status": "resolved", "classification": "truePositive"}
            )
            agent.kill()
            sim.throttle(0)
            agent.start()
            port = await writeback_port(agent)
            done = await wait_state(port, first["id"], "done")
            assert [w.method for w in sim.writes.applied] == ["PATCH"]
            own_version = sim.alerts[a["id"]]["lastUpdateDateTime"]
            assert done["graphVersions"] == [own_version]

            # 2. Graph applies the comment and never answers; the agent dies waiting; restart checks first.
            sim.writes.faults.append(WriteFault(Fault(200, b"{}", delay_secs=60), apply=True))
            _, second, _ = await api(
                port, "PATCH", f"/v1/sources/sim/alerts/{b['id']}", {"comment": "closed in Sentinel"}
            )
            await until(lambda: len(sim.writes.applied) == 2, 10, "the comment applied")
            agent.kill()
            agent.start()
            port = await writeback_port(agent)
            await wait_state(port, second["id"], "done")
            assert [x["comment"] for x in sim.alerts[b["id"]]["comments"]] == ["closed in Sentinel"]

            # 3. A 429 storm: queued 429s with Retry-After, then a throttle window; Retry-After kept.
            for _ in range(3):
                sim.writes.faults.append(WriteFault(throttled("0.4")))
            _, third, _ = await api(
                port, "PATCH", f"/v1/sources/sim/alerts/{c['id']}", {"assignedTo": "kim@contoso.com"}
            )
            await wait_state(port, third["id"], "done")
            patches = [r for r in sim.writes.requests() if r.method == "PATCH" and r.path.endswith(c["id"])]
            assert [r.status for r in patches] == [429, 429, 429, 200]
            assert all(y.at - x.at >= 0.39 for x, y in itertools.pairwise(patches))

            # Loop control: the agent's own version comes back marked.
            await until(
                lambda: (
                    (a["id"], own_version) in {(r["id"], r["lastUpdateDateTime"]) for r in read_jsonl(out)}
                ),
                20,
                "own version",
            )
            assert await agent.stop() == 0
        finally:
            agent.kill()

        assert [w.method for w in sim.writes.applied] == ["PATCH", "POST", "PATCH"], "each write exactly once"
        marked = [r for r in read_jsonl(out) if r["id"] == a["id"] and r["lastUpdateDateTime"] == own_version]
        assert marked[0]["siemAgent"] == {
            "origin": "siem-agent-writeback",
            "requestId": first["id"],
            "requestedBy": "sentinel",
        }
        # One budget for polls and writes: the token bucket bound over every Graph request.
        times = all_graph_times(graph_sim)
        for i, start in enumerate(times):
            for j in range(i, len(times)):
                d = times[j] - start
                if d > 60:
                    break
                assert j - i + 1 <= BURST + d * RPM / 60 + 1, f"{j - i + 1} requests in {d:.2f}s"
        log = agent.log_text()
        leaked = TOKEN in log
        assert not leaked, "the token leaked into the agent's log"
        assert "Traceback" not in log
        assert [r for r in agent.log_records() if r.get("level") in ("error", "critical")] == []


class TestCliEndToEnd:
    async def test_cli_updates_once_and_the_running_agent_holds_its_version_back(
        self, tmp_path: Path, graph_sim: SimEnv
    ) -> None:
        """alerts/incidents update: exit 0 and one line; bad values exit 2 and unknown ids exit 1 with
        Graph's message, nothing sent for either; with forward_own_updates = false the running agent
        does not forward the CLI's version but does forward a later change made by someone else."""
        sim = graph_sim.sim
        alert = sim.add_alerts(1)[0]["id"]
        incident = sim.add_incidents(1)[0]["id"]
        out = tmp_path / "out.jsonl"
        source = fast_source(graph_sim.source(), incidents=True)
        sink = {
            "type": "file",
            "name": "file",
            "path": str(out),
            "codec": {"type": "json"},
            "batch": {"timeout_secs": 0.05},
        }
        settings = agent_settings(
            tmp_path / "state", [source], [sink], writeback={"forward_own_updates": False}
        )
        cfg = write_config(tmp_path / "agent.toml", settings)
        agent = AgentProcess(cfg, tmp_path / "agent.log")
        try:
            agent.start()
            await until(lambda: len(read_jsonl(out)) == 2, 20, "the first versions")
            ok = await cli(
                "alerts", "update", "--config", str(cfg), "--source", "sim", alert,
                "--status", "resolved", "--classification", "truePositive", "--determination", "malware",
                "--comment", "closed from the command line",
            )  # fmt: skip
            bad = await cli(
                "alerts", "update", "--config", str(cfg), "--source", "sim", alert, "--status", "closed"
            )
            nope = await cli(
                "alerts", "update", "--config", str(cfg), "--source", "other", alert, "--status", "new"
            )
            gone = await cli(
                "alerts", "update", "--config", str(cfg), "--source", "sim", "da404", "--status", "new"
            )
            inc = await cli(
                "incidents", "update", "--config", str(cfg), "--source", "sim", incident,
                "--status", "resolved", "--custom-tag", "closed-in-splunk", "--custom-tag", "fp",
            )  # fmt: skip
            cli_version = sim.alerts[alert]["lastUpdateDateTime"]
            external = sim.update(alert)  # someone else changes it in Defender afterwards
            await until(
                lambda: any(
                    r["lastUpdateDateTime"] == external["lastUpdateDateTime"] for r in read_jsonl(out)
                ),
                20,
                "the external change",
            )
            assert await agent.stop() == 0
        finally:
            agent.kill()
        code, stdout, stderr = ok
        assert code == 0 and stderr == "" and stdout.count("\n") == 1, (stdout, stderr)
        assert stdout.startswith(
            f"alert {alert} (source sim): updated: status=resolved, classification=truePositive, determination=malware, comment added; lastUpdateDateTime {cli_version}"
        )
        assert bad[0] == 2 and "status 'closed' is not one of: new, inProgress, resolved" in bad[2]
        assert nope[0] == 2 and "no source named 'other'" in nope[2] and "(sources: sim)" in nope[2]
        assert gone[0] == 1 and "Graph returned 404 NotFound" in gone[2] and "request-id " in gone[2]
        assert inc[0] == 0 and sim.incidents[incident]["customTags"] == ["closed-in-splunk", "fp"]
        assert [(w.method, w.entity) for w in sim.writes.applied] == [
            ("POST", "alert"),
            ("PATCH", "alert"),
            ("PATCH", "incident"),
        ]
        forwarded = [(r["id"], r["lastUpdateDateTime"]) for r in read_jsonl(out)]
        assert (alert, cli_version) not in forwarded and (alert, external["lastUpdateDateTime"]) in forwarded
        assert not any("siemAgent" in r for r in read_jsonl(out))

    async def test_validate_reports_the_write_permissions(self, tmp_path: Path, graph_sim: SimEnv) -> None:
        """From the token's roles claim: granted → ok; missing with write-back enabled → FAILED, exit 1."""
        sim = graph_sim.sim
        sim.add_alerts(1)
        data = agent_settings(tmp_path / "state", [graph_sim.source()], [{"type": "stdout", "name": "o"}])
        cfg = write_toml(tmp_path / "a.toml", data)
        code, out, _ = await cli("validate", "--check-connectivity", "--config", str(cfg), environ=env())
        assert code == 0 and (
            "source sim write-back: ok (SecurityAlert.ReadWrite.All granted; SecurityIncident.ReadWrite.All granted"
            in out
        ), out
        sim.roles = ["SecurityAlert.Read.All"]
        data["writeback"] = {"enabled": True, "tokens": [TOKEN]}
        write_toml(cfg, data)
        code, out, _ = await cli("validate", "--check-connectivity", "--config", str(cfg), environ=env())
        assert (
            code == 1 and "source sim write-back: FAILED (SecurityAlert.ReadWrite.All not granted" in out
        ), out
        leaked = TOKEN in out
        assert not leaked, "the token leaked into the command's output"
