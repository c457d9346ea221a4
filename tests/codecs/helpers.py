"""Test-side references for the codec suites: sample and hostile alerts, and spec-reading parsers.

The parsers here are written from the specs (CEF rev. 25, RFC 5424 §6.3) independently of agent.codecs,
so a test can check our output by reading it back the way a receiver would.
"""

from __future__ import annotations

import copy
import csv
import io
import re
from pathlib import Path
from typing import Any

import orjson
from pydantic import TypeAdapter

from agent.codecs import build_serializer
from agent.codecs.base import Serializer
from agent.codecs.config import CodecConfig

DATA = Path(__file__).resolve().parent.parent / "data"
ADAPTER: TypeAdapter[Any] = TypeAdapter(CodecConfig)


def serializer(config: dict[str, Any], hook: Any = None) -> Serializer:
    return build_serializer(ADAPTER.validate_python(config), hook)


def sample_alerts() -> list[dict[str, Any]]:
    """The documentation alerts: with device/file/process/registry evidence, and a Sentinel one without."""
    out = []
    for name in (
        "alerts_v2_list_response_learn2026.json",
        "alerts_v2_list_sentinel_filter_response_learn2026.json",
    ):
        out += orjson.loads((DATA / name).read_bytes())["value"]
    out.append(orjson.loads((DATA / "alerts_v2_get_response.json").read_bytes()))
    return out


def data_csv(name: str) -> list[dict[str, str]]:
    """The rows of a CSV file under tests/data."""
    return list(csv.DictReader(io.StringIO((DATA / name).read_text(encoding="utf-8"))))


def doc_samples() -> list[dict[str, Any]]:
    """Every alerts_v2 alert in Microsoft's documentation samples (tests/data/README.md)."""
    out = sample_alerts()
    out += orjson.loads((DATA / "graph" / "alerts_v2_list_response.json").read_bytes())["value"]
    out.append(orjson.loads((DATA / "alerts_v2_update_response.json").read_bytes()))
    incidents = orjson.loads((DATA / "incidents_list_expand_alerts_response.fixed.json").read_bytes())
    out += [alert for incident in incidents["value"] for alert in incident.get("alerts", [])]
    return out


def synthetic_alert() -> dict[str, Any]:
    """A made-up alert with every evidence type the codecs map (several devices, files, processes)."""
    result: dict[str, Any] = orjson.loads((DATA / "alerts_v2_synthetic_all_evidence.json").read_bytes())
    return result


def base_alert() -> dict[str, Any]:
    return copy.deepcopy(sample_alerts()[0])


HOSTILE_TEXTS = [
    "line1\nline2\r\nline3",
    "nul\x00byte and \x1b[31mansi\x07",
    'pipe | equals = backslash \\ bracket ] quote " end\\',
    "fake <14>1 2024-01-01T00:00:00Z evil app - - - forged\n<13>1 - - - - - - second",
    "CEF:0|Evil|Corp|1|x|forged|10|src=6.6.6.6 act=allow",
    "lone \ud800 surrogate \udfff",
    "RTL \u202eevil\u202c and combining e\u0301\u0301\u0301 and \u2028 sep",
    "trailing spaces   ",
    "tab\tseparated\tvalues and C1 \x85 \x9b",
    "msg=forged cs1=forged key=value",
]


def hostile_alerts() -> list[dict[str, Any]]:
    """Alerts built to break encoders: every hostile text in every mapped field, plus a 1 MB field."""
    out = []
    for text in HOSTILE_TEXTS:
        alert = base_alert()
        for key in ("title", "description", "category", "detectorId", "status", "tenantId", "incidentId"):
            alert[key] = text
        alert["evidence"][0]["deviceDnsName"] = text
        alert["evidence"][1]["fileDetails"]["fileName"] = text
        alert["evidence"].append({"@odata.type": "#microsoft.graph.security.futureEvidence", "x": text})
        out.append(alert)
    big = base_alert()
    big["description"] = ("A\\=|]\n\x00" * 180_000)[:1_000_000]
    big["title"] = "t" * 100_000
    big["evidence"][0]["deviceDnsName"] = "h" * 200_000
    out.append(big)
    odd = base_alert()
    odd.update({"severity": ["high"], "mitreTechniques": 7, "evidence": [1, None, "x", {"@odata.type": 5}]})
    out.append(odd)
    return out


def expected_text(text: str, newlines: bool) -> str:
    """Our text policy, restated: TAB (and CR/LF unless kept) -> space, other controls/surrogates -> U+FFFD."""
    out = []
    for ch in text:
        if ch == "\t" or (ch in "\r\n" and not newlines):
            out.append(" ")
        elif ch in "\r\n" or not (ord(ch) < 32 or 0x7F <= ord(ch) <= 0x9F or 0xD800 <= ord(ch) <= 0xDFFF):
            out.append(ch)
        else:
            out.append("\ufffd")
    return "".join(out)


def _unescape(text: str, table: dict[str, str]) -> str:
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in table:
            out.append(table[text[i + 1]])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def parse_cef(message: str) -> tuple[list[str], dict[str, str]]:
    """Split a CEF message per the standard: 8 header parts (unescaped) and the extension dict."""
    head, i = [], 0
    current: list[str] = []
    while len(head) < 7:
        ch = message[i]
        if ch == "\\" and message[i + 1] in "\\|":
            current.append(message[i + 1])
            i += 2
            continue
        if ch == "|":
            head.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    ext = message[i:]
    assert not ext.startswith(" "), "no space after the 7th pipe"
    # keys: an alphanumeric word preceded by start or a space and followed by an unescaped '='
    starts = [m for m in re.finditer(r"(?:^| )([A-Za-z0-9]+)=", ext) if not _escaped(ext, m.end() - 1)]
    values: dict[str, str] = {}
    for n, m in enumerate(starts):
        end = starts[n + 1].start() if n + 1 < len(starts) else len(ext)
        raw = ext[m.end() : end]
        assert m.group(1) not in values, f"duplicate key {m.group(1)}"
        values[m.group(1)] = _unescape(raw, {"\\": "\\", "=": "=", "n": "\n", "r": "\r"})
    return head, values


def _escaped(text: str, pos: int) -> bool:
    count = 0
    while pos > 0 and text[pos - 1] == "\\":
        count += 1
        pos -= 1
    return count % 2 == 1


_SD_PARAM = re.compile(r' ([^= \]"]+)="((?:[^"\\]|\\.)*)"')


def parse_5424(message: bytes) -> dict[str, Any]:
    """Split an RFC 5424 message into header fields, SD params (unescaped) and MSG."""
    text = message.decode("utf-8")
    m = re.match(r"<(\d{1,3})>1 (\S+) (\S+) (\S+) (\S+) (\S+) ", text)
    assert m, text[:200]
    rest = text[m.end() :]
    sd: dict[str, dict[str, str]] = {}
    if rest.startswith("-"):
        rest = rest[1:]
    while rest.startswith("["):
        sd_id = re.match(r"\[([^ \]]+)", rest)
        assert sd_id
        pos = sd_id.end()
        params = {}
        while rest[pos] == " ":
            p = _SD_PARAM.match(rest, pos)
            assert p, rest[pos : pos + 80]
            params[p.group(1)] = _unescape(p.group(2), {'"': '"', "\\": "\\", "]": "]"})
            pos = p.end()
        assert rest[pos] == "]"
        sd[sd_id.group(1)] = params
        rest = rest[pos + 1 :]
    msg = rest[1:] if rest.startswith(" ") else rest
    keys = ("pri", "timestamp", "hostname", "app_name", "procid", "msgid")
    return dict(zip(keys, m.groups(), strict=True)) | {"sd": sd, "msg": msg}


def leaves(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``a.b.c -> value`` for every leaf (lists kept as values)."""
    out: dict[str, Any] = {}
    for key, value in doc.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out |= leaves(value, path + ".")
        else:
            out[path] = value
    return out
