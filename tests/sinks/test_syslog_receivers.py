"""TCP, TLS and UDP sinks with the real codec into real receivers: rsyslog 8.2302 and syslog-ng 3.38
(tests/receivers/fixtures.py; installed by tests/receivers/install.sh)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agent.codecs import build_serializer
from agent.model import Event
from agent.sinks import SinkContext
from tests.receivers.fixtures import Receiver
from tests.sinks.conftest import alert, build, config

CODEC = {"type": "syslog5424", "msg": {"type": "cef"}}


def make_events(table: dict[str, Any], n: int, start: int, tag: str) -> list[Event]:
    serializer = build_serializer(config(table).codec)
    alerts = [alert(i, title=f"{tag} alert {i}") for i in range(start, start + n)]
    return [Event(a, serializer.encode(a)) for a in alerts]


def ids_in(records: list[dict[str, Any]], tag: str) -> list[str]:
    out = []
    for r in records:
        text = json.dumps(r)
        if f"{tag} alert" in text:
            out.extend(a for a in (alert(i)["id"] for i in range(1000)) if f'"{a}' in text or f"={a}" in text)
    return out


CASES = [
    # (receiver fixture, port name, sink type, extra table keys)
    ("rsyslog", "tcp", "tcp", {"framing": "octet_counting"}),
    ("rsyslog", "tcp", "tcp", {"framing": "newline"}),
    ("rsyslog", "tls", "tcp", {"tls": "ca"}),
    ("rsyslog", "udp", "udp", {}),
    ("syslog_ng", "tcp", "tcp", {"framing": "octet_counting"}),
    ("syslog_ng", "tcp_lf", "tcp", {"framing": "newline"}),
    ("syslog_ng", "tls", "tcp", {"tls": "ca"}),
    ("syslog_ng", "udp", "udp", {}),
]


@pytest.mark.receivers
@pytest.mark.parametrize(
    ("fixture", "port", "kind", "extra"),
    CASES,
    ids=[f"{c[0]}-{c[1]}-{c[2]}-{'-'.join(map(str, c[3].values())) or 'udp'}" for c in CASES],
)
async def test_real_receiver_gets_every_message(
    fixture: str,
    port: str,
    kind: str,
    extra: dict[str, Any],
    request: pytest.FixtureRequest,
    ctx: SinkContext,
) -> None:
    """Every message of two batches arrives parsed, once, with its alert id."""
    rcv: Receiver = request.getfixturevalue(fixture)
    table: dict[str, Any] = {
        "type": kind,
        "host": "127.0.0.1",
        "port": rcv.ports[port],
        "codec": CODEC,
        **extra,
    }
    if extra.get("tls") == "ca":
        table["tls"] = {"ca_file": str(rcv.ca_file), "server_name": "localhost"}
    tag = f"{fixture}-{port}-{kind}-{extra.get('framing', 'x')}"
    sink = build(table, ctx)
    since = rcv.mark()
    try:
        await sink.start()
        await sink.send(make_events(table, 5, 0, tag))
        await sink.send(make_events(table, 5, 5, tag))
    finally:
        await sink.aclose()
    records = [r for r in rcv.wait_for(10, since) if tag in json.dumps(r)]
    assert len(records) == 10
    assert sorted(ids_in(records, tag)) == sorted(alert(i)["id"] for i in range(10))
