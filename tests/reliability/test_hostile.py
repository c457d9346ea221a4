"""Claim: alert text never forges a SIEM event — through the whole agent, into real parsers (README).

``N`` generated alerts carry injection payloads in every text field the codecs map (CR, LF, NUL, ``|``,
``=``, ``\\``, ``]``, ``"``, fake ``<14>1`` syslog headers, fake ``CEF:0|`` headers, lone surrogates,
RTL/combining characters, C1 controls, and every 50th one ~100 KB fields). The Graph simulator
serves them as Graph (.NET) would: lone surrogates as ``\\ud800`` escapes in otherwise valid JSON. The
real agent process (source, runner, TCP sink) fans them out to one sink per codec/envelope/receiver:
CEF, LEEF, JSON, ECS inside RFC 5424 into rsyslog; CEF inside RFC 3164 into rsyslog; CEF and JSON
inside RFC 5424 and CEF inside RFC 3164 into syslog-ng. Each sink writes its own HOSTNAME (its name).

Asserted per sink: exactly ``N`` records parsed, one per alert id (no extra records: a sentinel sent
after the agent stopped is the receiver's next record), each with the header fields we sent
(HOSTNAME, APP-NAME/tag, MSGID) — a forged header would change them — and for CEF the vendor and
product we sent, for LEEF its header. The sinks' counters show no dead letters.

Runtime: about 10-20 s.
"""

from __future__ import annotations

import json
import re
import socket
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

import agent.simulator.server as sim_server
from agent.simulator.server import backdate
from tests.codecs.helpers import HOSTILE_TEXTS
from tests.receivers.fixtures import Receiver
from tests.support.agent_process import AgentProcess, agent_settings, fast_source, write_config
from tests.support.simulator import SimEnv
from tests.support.wait import until

N = 600
SENTINEL = b"<14>1 2024-01-01T00:00:00Z sentinel sentinel - SENTINEL - end"
SD_ID = re.compile(r'\bid="([^"]*)"')
EXT_ID = re.compile(r"(?:^|[| ])externalId=(\S+)")

# (sink name = HOSTNAME, receiver, port, framing, codec)
SINKS: list[tuple[str, str, str, str, dict[str, Any]]] = [
    ("rs-cef-5424", "rsyslog", "tcp", "octet_counting", {"type": "syslog5424", "msg": {"type": "cef"}}),
    ("rs-leef-5424", "rsyslog", "tcp", "octet_counting", {"type": "syslog5424", "msg": {"type": "leef"}}),
    ("rs-json-5424", "rsyslog", "tcp", "newline", {"type": "syslog5424", "msg": {"type": "json"}}),
    ("rs-ecs-5424", "rsyslog", "tcp", "octet_counting", {"type": "syslog5424", "msg": {"type": "ecs"}}),
    ("rs-cef-3164", "rsyslog", "tcp", "newline", {"type": "syslog3164", "msg": {"type": "cef"}}),
    ("ng-cef-5424", "syslog-ng", "tcp", "octet_counting", {"type": "syslog5424", "msg": {"type": "cef"}}),
    ("ng-json-5424", "syslog-ng", "tcp_lf", "newline", {"type": "syslog5424", "msg": {"type": "json"}}),
    ("ng-cef-3164", "syslog-ng", "tcp_bsd", "newline", {"type": "syslog3164", "msg": {"type": "cef"}}),
]


class _GraphJson:
    """orjson for the simulator, except that text orjson cannot encode (lone surrogates) is written the
    way Graph's .NET serializer writes it: as ``\\udXXX`` escapes in valid JSON."""

    JSONDecodeError = orjson.JSONDecodeError
    loads = staticmethod(orjson.loads)

    @staticmethod
    def dumps(obj: Any, *args: Any, **kwargs: Any) -> bytes:
        try:
            return orjson.dumps(obj, *args, **kwargs)
        except orjson.JSONEncodeError:
            return json.dumps(obj, ensure_ascii=True).encode()


def hostile(env: SimEnv) -> dict[str, dict[str, Any]]:
    start = backdate(600)
    made = {}
    for i in range(N):
        (alert,) = env.sim.add_alerts(1, when=start + timedelta(milliseconds=500 * i))
        text = (
            f"{HOSTILE_TEXTS[i % len(HOSTILE_TEXTS)]} #{i} {HOSTILE_TEXTS[(i * 7 + 3) % len(HOSTILE_TEXTS)]}"
        )
        if i % 50 == 0:
            text = (text + ' \\|=]"\r\n\x00<14>1 CEF:0|x|y|') * (100_000 // 60)
        for key in ("title", "description", "category", "recommendedActions", "actorDisplayName"):
            alert[key] = text
        alert["threatDisplayName"] = text[::-1]
        alert["detectorId"] = f"CEF:0|Evil|Corp|1|{i}|x|10|"
        alert["evidence"][0]["deviceDnsName"] = text[:300]
        alert["evidence"][0]["hostName"] = "evil\n<13>1 - forged"
        alert["evidence"][1]["userAccount"]["accountName"] = text[:100]
        made[alert["id"]] = alert
    return made


def host_of(record: dict[str, Any]) -> str:
    return str(record.get("hostname", record.get("HOST", "")))


def record_id(record: dict[str, Any], codec: dict[str, Any]) -> str | None:
    """The alert id a parsed record carries: SD ``id`` (RFC 5424) or CEF ``externalId`` (RFC 3164)."""
    sd = record["$!"].get("rfc5424-sd") if isinstance(record.get("$!"), dict) else record.get("_SDATA")
    if codec["type"] == "syslog5424":
        if isinstance(sd, dict):  # parsed SD: {"alert@32473": {"id": ...}}
            return next((str(p["id"]) for p in sd.values() if isinstance(p, dict) and "id" in p), None)
        found = SD_ID.search(str(sd or ""))
        return found.group(1) if found else None
    cef = record.get("$!", {}).get("cef") if "$!" in record else None
    if isinstance(cef, dict):
        return str(cef.get("Extensions", {}).get("externalId"))
    found = EXT_ID.search(str(record.get("MESSAGE", "")))
    return found.group(1) if found else None


def check_headers(name: str, receiver: str, codec: dict[str, Any], record: dict[str, Any]) -> None:
    inner = codec["msg"]["type"]
    if receiver == "rsyslog":
        msg = str(record["msg"])
        if codec["type"] == "syslog5424":
            assert (record["app-name"], record["msgid"]) == ("siem-agent", "alert"), record
        else:
            assert record["syslogtag"] == "siemagent:", record
        if inner == "cef":
            cef = record["$!"]["cef"]
            assert (cef["DeviceVendor"], cef["DeviceProduct"]) == ("Microsoft", "Graph Security"), cef
    else:
        msg = str(record["MESSAGE"])
        if codec["type"] == "syslog5424":
            assert (record["PROGRAM"], record["MSGID"]) == ("siem-agent", "alert"), record
        else:
            assert record["PROGRAM"] == "siemagent", record
        if inner == "cef":
            assert msg.startswith("CEF:0|Microsoft|Graph Security|"), msg[:200]
    if inner == "leef":
        assert msg.lstrip(" ").startswith("LEEF:2.0|Microsoft|Graph Security|"), msg[:200]
    if inner in ("json", "ecs"):
        assert isinstance(orjson.loads(msg), dict)


async def test_hostile_alerts_through_every_codec_into_real_parsers(
    tmp_path: Path,
    graph_sim: SimEnv,
    rsyslog: Receiver,
    syslog_ng: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sim_server, "orjson", _GraphJson)
    alerts = hostile(graph_sim)
    receivers = {"rsyslog": rsyslog, "syslog-ng": syslog_ng}
    marks = {name: r.mark() for name, r in receivers.items()}
    sinks = [
        {
            "type": "tcp",
            "name": name,
            "host": "127.0.0.1",
            "port": receivers[rcv].ports[port],
            "framing": framing,
            "codec": {**codec, "hostname": name},
            "batch": {"max_events": 100, "timeout_secs": 0.05},
        }
        for name, rcv, port, framing, codec in SINKS
    ]
    settings = agent_settings(tmp_path / "state", [fast_source(graph_sim.source(), page_size=100)], sinks)
    agent = AgentProcess(write_config(tmp_path / "agent.toml", settings), tmp_path / "agent.log")

    def records() -> dict[str, list[dict[str, Any]]]:
        return {name: r.records()[marks[name] :] for name, r in receivers.items()}

    def arrived() -> bool:
        got = records()
        return (
            all(sum(1 for rec in got[rcv] if host_of(rec) == name) >= N for name, rcv, *_ in SINKS)
            or not agent.alive()
        )

    agent.start()
    try:
        await until(arrived, 60, f"{N} records per sink")
        assert agent.alive(), agent.log_text()[-3000:]
        assert await agent.stop() == 0
    finally:
        agent.kill()

    for name, receiver in receivers.items():  # nothing more is coming: the sentinel is the next record
        with socket.create_connection(("127.0.0.1", receiver.ports["tcp"]), timeout=10) as s:
            s.sendall(b"%d %s" % (len(SENTINEL), SENTINEL) if name == "syslog-ng" else SENTINEL + b"\n")
    got = records()
    for name, receiver in receivers.items():
        expected_count = sum(N for _, rcv, *_ in SINKS if rcv == name)
        after = receiver.wait_for(expected_count + 1, marks[name])
        assert len(after) == expected_count + 1, f"{name}: {len(after) - 1} records for {expected_count}"
        assert host_of(after[-1]) == "sentinel", after[-1]
        got[name] = after[:-1]

    for name, rcv, _, _, codec in SINKS:
        mine = [r for r in got[rcv] if host_of(r) == name]
        assert len(mine) == N, f"{name}: {len(mine)} records"
        ids = [record_id(r, codec) for r in mine]
        assert sorted(i for i in ids if i is not None) == sorted(alerts), f"{name}: ids differ"
        for record in mine:
            check_headers(name, rcv, codec, record)
    strangers = [r for rcv in got.values() for r in rcv if host_of(r) not in {s[0] for s in SINKS}]
    assert strangers == [], strangers[:3]
    logs = agent.log_records()
    assert not [r for r in logs if r.get("level") == "error" or "raw" in r]
    assert not (tmp_path / "state" / "dead-letter.jsonl").exists()
