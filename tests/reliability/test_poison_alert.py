"""Claim: no alert can stop the agent — a poison alert on every poll, through the whole agent.

The Graph simulator lists, on every poll, one alert nested 1000 levels deep (orjson writes and reads
it; every codec fails on it the first time: orjson refuses more than 254 levels, Python recursion
ends near 1000) and one item without an ``id``, among normal alerts. The real agent process fans
them out to a JSON file sink and a CEF file sink. Asserted: the process stays up across polls and a
restart, and exits 0 on SIGTERM; every normal alert reaches both sinks once; the poison alert reaches
both sinks once, cut at 64 levels, counted in ``siem_agent_truncated_fields_total``; the item without
an id is dead-lettered once (with ``"source"`` and the reason), whatever the number of polls and
restarts; every log line is JSON, and the rejections are one clear line each.

Runtime: about 5 s.
"""

from __future__ import annotations

from pathlib import Path

import orjson

from agent.nesting import CUT_MARKER
from agent.simulator.server import backdate
from tests.support.agent_process import AgentProcess, agent_settings, fast_source, read_jsonl, write_config
from tests.support.simulator import SimEnv
from tests.support.wait import until

DEPTH = 1000


async def test_a_poison_alert_on_every_poll_never_stops_the_agent(tmp_path: Path, graph_sim: SimEnv) -> None:
    sim = graph_sim.sim
    normal = sim.add_alerts(20, when=backdate(120))
    poison = sim.add_alerts(1, when=backdate(110))[0]
    poison["additionalData"] = orjson.Fragment(b'{"k":' * DEPTH + b"1" + b"}" * DEPTH)
    no_id = dict(normal[0], title="an item without an id")
    del no_id["id"]
    sim.alerts["no-id"] = no_id
    json_out, cef_out = tmp_path / "alerts.jsonl", tmp_path / "alerts.cef"
    sinks = [
        {"type": "file", "name": "json", "path": str(json_out), "codec": {"type": "json"}},
        {"type": "file", "name": "cef", "path": str(cef_out), "codec": {"type": "cef"}},
    ]
    for sink in sinks:
        sink["batch"] = {"timeout_secs": 0.05}
    settings = agent_settings(tmp_path / "state", [fast_source(graph_sim.source())], sinks)
    agent = AgentProcess(write_config(tmp_path / "agent.toml", settings), tmp_path / "agent.log")
    want = {a["id"] for a in normal} | {poison["id"]}

    def cef_ids() -> list[str]:
        text = cef_out.read_text() if cef_out.exists() else ""
        return [
            w.split("=", 1)[1]
            for line in text.splitlines()
            for w in line.split(" ")
            if w.startswith("externalId=")
        ]

    try:
        for run in range(2):  # a restart reads the same poison alert again (the overlap)
            agent.start()
            polls = len(sim.graph_requests())
            await until(
                lambda polls=polls: (
                    (len(sim.graph_requests()) >= polls + 5 and len(cef_ids()) >= len(want))
                    or not agent.alive()
                ),
                30,
                f"run {run}: five polls and every alert in both sinks",
            )
            assert agent.alive(), agent.log_text()[-3000:]
            assert await agent.stop() == 0
    finally:
        agent.kill()

    records = read_jsonl(json_out)
    assert sorted(r["id"] for r in records) == sorted(want)  # each once, poison included
    cut = next(r for r in records if r["id"] == poison["id"])["additionalData"]
    depth = 0
    while isinstance(cut, dict):
        cut, depth = cut["k"], depth + 1
    assert cut == CUT_MARKER and depth == 64
    assert sorted(cef_ids()) == sorted(want)
    dead = read_jsonl(tmp_path / "state" / "dead-letter.jsonl")
    assert [(d.get("source"), d["reason"], d["alert"]["title"]) for d in dead] == [
        ("sim/alerts_v2/all", "no id", "an item without an id")
    ]
    logs = agent.log_records()
    assert not [r for r in logs if "raw" in r or "Traceback" in orjson.dumps(r).decode()]
    assert not [r for r in logs if r.get("message") in ("Component crashed.", "Component failed.")]
    rejected = [r for r in logs if str(r.get("message", "")).startswith("Item without a usable id")]
    assert len(rejected) == 1
