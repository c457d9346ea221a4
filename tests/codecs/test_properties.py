"""Property tests: whatever an alert contains, each codec emits one valid, bounded, unforgeable message."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.codecs import CODECS
from agent.codecs.config import CodecConfig, MsgCodecConfig
from agent.codecs.msg import MSG_CODECS
from tests.codecs.helpers import base_alert, expected_text, parse_5424, parse_cef, serializer

NASTY = st.sampled_from(list("\x00\r\n\t|=\\]\"' \ud800\udfff\u202e\u0301\x85\ufeff<>:"))
TEXT = st.text(st.one_of(st.characters(), NASTY), max_size=60)
FIELDS = ("title", "description", "category", "detectorId", "status", "tenantId", "incidentId", "severity")
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def alerts(draw: st.DrawFn) -> dict[str, Any]:
    alert = base_alert()
    for key in FIELDS:
        alert[key] = draw(st.one_of(TEXT, st.none(), st.integers(), st.lists(TEXT, max_size=3)))
    alert["evidence"].append({"@odata.type": draw(TEXT), "ipAddress": draw(TEXT), "hostName": draw(TEXT)})
    alert["evidence"][0]["deviceDnsName"] = draw(TEXT)
    alert[draw(TEXT)] = draw(TEXT)
    return alert


CONFIGS: list[dict[str, Any]] = [
    {"type": "json"},
    {"type": "ecs"},
    {"type": "cef"},
    {"type": "leef"},
    {"type": "syslog5424", "hostname": "h", "msg": {"type": "cef"}},
    {"type": "syslog5424", "hostname": "h", "msg": {"type": "leef"}},
    {"type": "syslog3164", "hostname": "h", "msg": {"type": "json"}},
]


def test_registry_matches_config_union() -> None:
    """CODECS keys are exactly the ``type`` tags of CodecConfig."""
    union = CodecConfig.__origin__.__args__  # type: ignore[attr-defined]
    assert set(CODECS) == {m.model_fields["type"].default for m in union}


def test_envelope_registry_matches_msg_union() -> None:
    """MSG_CODECS (what an envelope may carry) has exactly the ``type`` tags of the ``msg`` union."""
    union = MsgCodecConfig.__origin__.__args__  # type: ignore[attr-defined]
    assert set(MSG_CODECS) == {m.model_fields["type"].default for m in union}


@SETTINGS
@given(alerts())
def test_one_bounded_utf8_message(alert: dict[str, Any]) -> None:
    """No raw CR/LF/NUL, valid UTF-8, within the cap, for every codec."""
    for config in CONFIGS:
        out = serializer(config | {"max_message_bytes": 4096}).encode(alert)
        out.decode("utf-8")
        assert b"\n" not in out and b"\r" not in out and b"\x00" not in out, config
        assert len(out) <= 4096, config
        if config["type"] == "json":
            assert orjson.loads(out)["id"] == alert["id"]


@SETTINGS
@given(alerts())
def test_cef_fields_read_back_equal(alert: dict[str, Any]) -> None:
    """Each string we map reads back (spec parser) as the cleaned original; no key is forged."""
    head, ext = parse_cef(serializer({"type": "cef"}).encode(alert).decode())
    assert len(head) == 7
    title = alert["title"]
    if isinstance(title, str) and title:
        assert head[5] == expected_text(title, newlines=False)
    for key, field in (("cat", "category"), ("cs2", "status"), ("cs3", "tenantId")):
        value = alert[field]
        if isinstance(value, str) and expected_text(value, True).rstrip(" "):
            assert ext[key] == expected_text(value, newlines=True).rstrip(" ")
    allowed = {"rt", "start", "end", "externalId", "msg", "cat", "shost", "sourceDnsDomain", "deviceExternalId",
               "src", "c6a1", "c6a1Label", "suser", "sntdom", "suid", "fname", "filePath", "fileHash", "fsize",
               "sproc", "spid", "request", "flexString1", "flexString1Label", "flexString2", "flexString2Label"}  # fmt: skip
    allowed |= {f"cs{i}" for i in range(1, 7)} | {f"cs{i}Label" for i in range(1, 7)}
    assert set(ext) <= allowed


@SETTINGS
@given(alerts())
def test_5424_sd_reads_back_equal(alert: dict[str, Any]) -> None:
    """SD params read back as the cleaned originals, in one SD element."""
    msg = parse_5424(
        serializer({"type": "syslog5424", "hostname": "h", "msg": {"type": "json"}}).encode(alert)
    )
    assert list(msg["sd"]) == ["alert@32473"]
    status = alert["status"]
    if isinstance(status, str) and status:
        assert msg["sd"]["alert@32473"]["status"] == expected_text(status, newlines=False)
    assert orjson.loads(msg["msg"])["id"] == alert["id"]
