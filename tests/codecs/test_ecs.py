"""ECS codec for Elastic Security: severity scale, event.ingested, categorization, every evidence item,
and every field it writes checked against the official ECS 8.11.0 field list (tests/data/ecs)."""

from __future__ import annotations

import ipaddress
from datetime import datetime
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from agent.codecs.config import EcsCodecConfig
from agent.codecs.ecs import ECS_VERSION, EcsSerializer
from tests.codecs.helpers import (
    ADAPTER,
    base_alert,
    data_csv,
    doc_samples,
    leaves,
    serializer,
    synthetic_alert,
)

ECS_FIELDS = {row["field"]: row["type"] for row in data_csv("ecs/ecs-8.11.0-fields.csv")}
ALLOWED = data_csv("ecs/ecs-8.11.0-allowed-values.csv")


def ecs(alert: dict[str, Any], now: float = 1_790_000_000.4, **config: Any) -> dict[str, Any]:
    cfg = EcsCodecConfig(**config)
    result: dict[str, Any] = orjson.loads(EcsSerializer(cfg, now=lambda: now).encode(alert))
    return result


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


class TestPromotion:
    """What Elastic Security's external-alert promotion rules read."""

    @pytest.mark.parametrize(
        ("graph", "expected"),
        [("informational", 21), ("low", 21), ("medium", 47), ("high", 73), ("unknown", 47), ("future", 47)],
    )
    def test_severity_scale(self, graph: str, expected: int) -> None:
        """Graph severity maps to 21/47/73 (unknown or new values: 47, the rules' default)."""
        doc = ecs(base_alert() | {"severity": graph})
        assert doc["event"]["severity"] == expected and doc["event"]["risk_score"] == float(expected)

    def test_severity_map_is_configurable(self) -> None:
        """``severity_map`` overrides the scale."""
        doc = ecs(base_alert() | {"severity": "high"}, severity_map={"high": 99, "unknown": 1})
        assert doc["event"]["severity"] == 99

    def test_ingested_is_the_encode_time_per_second(self) -> None:
        """``event.ingested`` is the time of encoding (UTC, whole seconds), recomputed each second."""
        clock = [1_790_000_000.2]
        ser = EcsSerializer(EcsCodecConfig(), now=lambda: clock[0])
        first = orjson.loads(ser.encode(base_alert()))["event"]["ingested"]
        clock[0] = 1_790_000_000.9
        same = orjson.loads(ser.encode(base_alert()))["event"]["ingested"]
        clock[0] = 1_790_000_061.0
        later = orjson.loads(ser.encode(base_alert()))["event"]["ingested"]
        assert first == same == "2026-09-21T14:13:20Z"
        assert later == "2026-09-21T14:14:21Z"

    def test_kind_message_and_data_stream(self) -> None:
        """``event.kind: alert``, ``message`` = title, and data_stream/event.dataset agree."""
        doc = ecs(base_alert(), dataset="microsoft_graph.alert", namespace="prod")
        assert doc["event"]["kind"] == "alert" and doc["message"] == base_alert()["title"]
        assert doc["data_stream"] == {"type": "logs", "dataset": "microsoft_graph.alert", "namespace": "prod"}
        assert doc["event"]["dataset"] == doc["data_stream"]["dataset"]
        assert doc["ecs"]["version"] == ECS_VERSION

    @pytest.mark.parametrize("bad", ["Microsoft.Graph", "a-b", "", "x" * 101, "_x"])
    def test_data_stream_parts_are_validated(self, bad: str) -> None:
        """dataset/namespace follow the data stream naming rules (lowercase, no '-')."""
        with pytest.raises(ValidationError):
            ADAPTER.validate_python({"type": "ecs", "dataset": bad})


class TestEvidence:
    def test_every_device_file_and_process_is_kept(self) -> None:
        """Two devices, files and processes all land in their ECS fields."""
        alert = synthetic_alert()
        doc = ecs(alert)
        kinds = {e["@odata.type"].rsplit(".", 1)[1] for e in alert["evidence"]}
        assert {"deviceEvidence", "fileEvidence", "processEvidence"} <= kinds
        assert as_list(doc["host"]["name"]) == [
            "yonif-lap3.middleeast.corp.microsoft.com",
            "srv-db02.contoso.com",
        ]
        assert set(as_list(doc["host"]["ip"])) == {"1.1.1.1", "10.1.2.3", "fe80::1:2:3:4"}
        assert as_list(doc["file"]["path"]) == [
            "C:\\Program Files\\temp\\MsSense.exe",
            "/home/alice/Downloads/invoice.docm",
        ]
        assert as_list(doc["process"]["pid"]) == [4780, 9124]
        assert "powershell.exe -enc SQBFAFgA" in as_list(doc["process"]["command_line"])

    def test_process_hashes_parent_and_user(self) -> None:
        """process.hash.*, process.parent.* and the process account (process.user.*)."""
        doc = ecs(base_alert())
        proc = doc["process"]
        assert proc["hash"]["sha256"].startswith("8963a19f")
        assert proc["parent"] == {
            "pid": 668,
            "start": "2021-08-12T07:39:09.0909239Z",
            "name": "services.exe",
            "executable": "C:\\Windows\\System32\\services.exe",
        }
        assert proc["user"]["name"] == "SYSTEM" and proc["user"]["id"] == "S-1-5-18"

    def test_user_evidence_wins_over_process_account(self) -> None:
        """user.* comes from user/mailbox evidence (with user.email); the process account otherwise."""
        doc = ecs(synthetic_alert())
        assert as_list(doc["user"]["email"]) == ["alice@contoso.com", "bob@contoso.com"]
        assert as_list(doc["user"]["name"]) == ["alice", "bob"]
        assert ecs(base_alert())["user"]["name"] == "SYSTEM"  # no user evidence: who ran the process

    def test_registry_email_url_and_cloud(self) -> None:
        """registry.*, email.* (+ source.ip), url.full and cloud.account.id."""
        doc = ecs(synthetic_alert())
        assert as_list(doc["registry"]["hive"]) == ["HKEY_LOCAL_MACHINE", "HKEY_CURRENT_USER"]
        assert doc["registry"]["value"] == "Updater"
        assert doc["registry"]["data"] == {"strings": "C:\\Users\\alice\\x.exe", "type": "String"}
        assert doc["email"]["from"]["address"] == "billing@example.net"
        assert doc["email"]["sender"]["address"] == "bounce@mail.example.net"
        assert doc["email"]["to"]["address"] == "alice@contoso.com"
        assert doc["email"]["subject"] == "Your invoice" and doc["email"]["direction"] == "inbound"
        assert doc["source"]["ip"] == "198.51.100.25"
        assert doc["url"]["full"] == "https://phish.example.net/login"
        assert doc["cloud"]["account"]["id"] == synthetic_alert()["tenantId"]

    def test_threat(self) -> None:
        """Techniques, subtechniques, the tactic with its ATT&CK id, group and software."""
        threat = ecs(synthetic_alert())["threat"]
        assert threat["technique"]["id"] == ["T1059", "T1204", "T1566"]
        assert threat["technique"]["subtechnique"]["id"] == ["T1059.001", "T1566.001"]
        assert threat["tactic"] == {
            "id": ["TA0002"],
            "name": ["Execution"],
            "reference": ["https://attack.mitre.org/tactics/TA0002/"],
        }
        assert threat["group"]["name"] == "Example Activity Group"
        assert threat["software"]["name"] == "ExampleFamily"
        assert "tactic" not in ecs(base_alert() | {"category": "Malware"}).get("threat", {})

    def test_categorization_follows_ecs_allowed_values(self) -> None:
        """event.category from the evidence types; every event.type is expected for some category."""
        expected = {
            r["value"]: set(r["expected_event_types"].split())
            for r in ALLOWED
            if r["field"] == "event.category"
        }
        for alert in [*doc_samples(), synthetic_alert()]:
            event = ecs(alert)["event"]
            assert event["category"] and set(event["category"]) <= set(expected)
            assert set(event["type"]) <= set().union(*(expected[c] for c in event["category"]))
            for category in event["category"]:
                assert expected[category] & set(event["type"]), category
        assert ecs(synthetic_alert())["event"]["category"] == [
            "host", "file", "process", "registry", "iam", "network", "email",
        ]  # fmt: skip
        no_evidence = base_alert() | {"evidence": []}
        assert ecs(no_evidence)["event"]["category"] == ["intrusion_detection"]
        assert "malware" in ecs(no_evidence | {"category": "Ransomware"})["event"]["category"]


class TestEcsFieldList:
    """Every field the codec writes exists in ECS 8.11.0 and holds a value of its ECS type."""

    def test_fields_exist_and_values_fit_their_type(self) -> None:
        for alert in [*doc_samples(), synthetic_alert()]:
            doc = ecs(alert, include_original=False)
            for path, value in leaves(doc).items():
                assert path in ECS_FIELDS, f"{path} is not an ECS 8.11 field"
                for item in as_list(value):
                    _check_type(path, ECS_FIELDS[path], item)

    def test_original_is_kept_whole(self) -> None:
        """``microsoft.graph.alert`` is the alert as Graph sent it."""
        alert = synthetic_alert()
        assert ecs(alert)["microsoft"]["graph"]["alert"] == alert


def _check_type(path: str, ecs_type: str, value: Any) -> None:
    if ecs_type in ("keyword", "constant_keyword", "wildcard", "match_only_text", "text"):
        assert isinstance(value, str), path
    elif ecs_type == "long":
        assert isinstance(value, int) and not isinstance(value, bool), path
    elif ecs_type in ("float", "scaled_float"):
        assert isinstance(value, float), path
    elif ecs_type == "date":
        assert isinstance(value, str) and datetime.fromisoformat(value[:19]), path
    elif ecs_type == "ip":
        ipaddress.ip_address(value)
    else:
        raise AssertionError(f"{path}: unexpected ECS type {ecs_type}")


def test_json_codec_output_is_unchanged() -> None:
    """The ECS work leaves the json codec as Graph sent the alert."""
    alert = synthetic_alert()
    assert orjson.loads(serializer({"type": "json"}).encode(alert)) == alert
