"""Splunk receiving side: TA-siem-agent reads only fields the codecs emit, its CEF transforms parse our
CEF, and its sourcetypes are the HEC sink's defaults."""

from __future__ import annotations

import configparser
import re
from pathlib import Path
from typing import Any

import orjson

from agent.sinks.http.splunk_hec import default_sourcetype
from tests.codecs.helpers import doc_samples, serializer, synthetic_alert
from tests.sinks.conftest import config

APP = Path(__file__).resolve().parents[2] / "deploy" / "splunk" / "TA-siem-agent" / "default"
JSON_TYPE, CEF_TYPE = "ms365:defender:incident:alerts", "microsoft:graph:security:alert:cef"
CIM_ALERTS = {
    "app",
    "description",
    "dest",
    "id",
    "mitre_technique_id",
    "severity",
    "signature",
    "src",
    "type",
    "user",
}


def conf(name: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=True, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((APP / name).read_text())
    return parser


def splunk_json_fields(value: Any, prefix: str = "") -> set[str]:
    """Field names Splunk's KV_MODE=json gives a JSON event (arrays as ``name{}``)."""
    if isinstance(value, dict):
        out: set[str] = set()
        for key, item in value.items():
            out |= splunk_json_fields(item, f"{prefix}.{key}" if prefix else key)
        return out
    if isinstance(value, list):
        return set().union(*(splunk_json_fields(v, prefix + "{}") for v in value)) if value else set()
    return {prefix} if value is not None else set()


def read_fields(stanza: configparser.SectionProxy) -> set[str]:
    """Every ``'field'`` the EVAL expressions read (the app quotes each field it reads)."""
    out: set[str] = set()
    for key, value in stanza.items():
        if key.startswith("EVAL-"):
            out |= set(re.findall(r"'([^']+)'", value))
    return out


def cef_fields(text: str) -> dict[str, str]:
    """Apply TA-siem-agent's CEF transforms with Python's re (same syntax for these patterns)."""
    transforms = conf("transforms.conf")
    header = re.search(transforms["siem_agent_cef_header"]["REGEX"], text)
    assert header is not None
    names = [n.split("::")[0] for n in transforms["siem_agent_cef_header"]["FORMAT"].split()]
    fields = dict(zip(names, header.groups(), strict=True))
    for m in re.finditer(transforms["siem_agent_cef_extension"]["REGEX"], text[header.end() - 1 :]):
        fields.setdefault(m.group(1), m.group(2))
    return fields


def test_json_stanza_reads_only_fields_the_json_codec_emits() -> None:
    """Each field the JSON stanza reads exists in some sample's JSON as Splunk names it."""
    emitted: set[str] = set()
    for alert in [*doc_samples(), synthetic_alert()]:
        emitted |= splunk_json_fields(orjson.loads(serializer({"type": "json"}).encode(alert)))
    missing = read_fields(conf("props.conf")[JSON_TYPE]) - emitted
    assert not missing, f"props read fields the json codec never writes: {missing}"


def test_cef_transforms_parse_our_cef_and_stanza_reads_emitted_keys() -> None:
    """The CEF transforms recover every key=value the cef codec wrote; the stanza reads only those."""
    emitted: set[str] = set()
    for alert in [*doc_samples(), synthetic_alert()]:
        text = serializer({"type": "cef"}).encode(alert).decode()
        fields = cef_fields(text)
        assert fields["cef_name"] == alert["title"] and fields["externalId"] == alert["id"]
        keys = set(re.findall(r"(?:\|| )([A-Za-z0-9]+)=", text.split("|", 7)[7]))
        assert keys <= set(fields), keys - set(fields)
        emitted |= set(fields)
    missing = read_fields(conf("props.conf")[CEF_TYPE]) - emitted
    assert not missing, f"props read CEF keys the cef codec never writes: {missing}"


def test_both_stanzas_fill_the_cim_alerts_fields_and_tag_alert() -> None:
    """Each sourcetype gets every CIM Alerts field; the eventtype covers both and is tagged alert."""
    props = conf("props.conf")
    for sourcetype in (JSON_TYPE, CEF_TYPE):
        produced = {k.split("-", 1)[1] for k in props[sourcetype] if k.startswith(("EVAL-", "FIELDALIAS-"))}
        assert produced >= CIM_ALERTS, CIM_ALERTS - produced
    search = conf("eventtypes.conf")["siem_agent_graph_alert"]["search"]
    assert f'sourcetype="{JSON_TYPE}"' in search and f'sourcetype="{CEF_TYPE}"' in search
    assert conf("tags.conf")["eventtype=siem_agent_graph_alert"]["alert"] == "enabled"


def test_app_sourcetypes_are_the_sink_defaults() -> None:
    """The HEC sink's default sourcetypes are the ones the app (and Splunk_TA_MS_Security) read."""
    hec = {"type": "splunk_hec", "url": "https://splunk.example:8088", "token": "t"}
    assert default_sourcetype(config(hec | {"codec": {"type": "json"}}).codec) == JSON_TYPE
    assert default_sourcetype(config(hec | {"codec": {"type": "cef"}}).codec) == CEF_TYPE
