"""JSON (raw) and ECS serializers: fidelity, surrogate repair, ECS fields, size bounding."""

from __future__ import annotations

import orjson

from tests.codecs.helpers import base_alert, sample_alerts, serializer


class TestJson:
    def test_raw_alert_round_trips(self) -> None:
        """Every sample alert comes back identical, key order kept."""
        for alert in sample_alerts():
            out = serializer({"type": "json"}).encode(alert)
            assert orjson.loads(out) == alert
            assert list(orjson.loads(out)) == list(alert)
            assert b"\n" not in out

    def test_lone_surrogates_are_replaced(self) -> None:
        """A lone surrogate becomes U+FFFD instead of failing the alert."""
        out = serializer({"type": "json"}).encode(base_alert() | {"title": "a\ud800b"})
        assert orjson.loads(out)["title"] == "a\ufffdb"

    def test_cap_cuts_longest_strings(self) -> None:
        """A 1 MB description is cut to fit and counted under its field name."""
        cuts: list[str] = []
        alert = base_alert() | {"description": "x" * 1_000_000, "custom": "y" * 100_000}
        out = serializer({"type": "json"}, cuts.append).encode(alert)
        assert len(out) <= 60_000
        doc = orjson.loads(out)
        assert doc["description"].endswith("…[truncated]") and doc["id"] == alert["id"]
        assert cuts == ["description", "other"]

    def test_too_many_fields_keep_identity(self) -> None:
        """When cutting strings cannot suffice, the identifying fields survive, flagged."""
        alert = base_alert() | {f"k{i}": i for i in range(20_000)}
        doc = orjson.loads(serializer({"type": "json", "max_message_bytes": 4096}).encode(alert))
        assert doc["siemAgentTruncated"] is True and doc["id"] == alert["id"]


class TestEcs:
    def test_fields(self) -> None:
        """The sample alert maps to the documented ECS fields and keeps the original."""
        alert = base_alert()
        doc = orjson.loads(serializer({"type": "ecs"}).encode(alert))
        assert doc["@timestamp"] == alert["lastUpdateDateTime"]
        assert doc["event"]["kind"] == "alert" and doc["event"]["severity"] == 21  # low
        assert doc["event"]["id"] == alert["id"]
        assert doc["rule"] == {
            "id": alert["detectorId"], "name": alert["title"], "description": alert["description"],
            "category": "DefenseEvasion", "ruleset": "antivirus",
        }  # fmt: skip
        assert doc["threat"]["technique"]["id"] == ["T1564"]
        assert doc["threat"]["technique"]["subtechnique"]["id"] == ["T1564.001"]
        assert doc["host"]["name"] == "yonif-lap3.middleeast.corp.microsoft.com"
        assert doc["user"]["name"] == "SYSTEM"
        assert doc["file"]["hash"]["sha256"].startswith("8963a19f")
        assert doc["file"]["path"] == "C:\\Program Files\\temp\\MsSense.exe"
        assert doc["process"]["pid"] == 4780
        assert doc["organization"]["id"] == alert["tenantId"]
        assert doc["microsoft"]["graph"]["alert"] == alert

    def test_without_evidence_or_original(self) -> None:
        """Alerts without evidence map; include_original=false drops the copy."""
        for alert in sample_alerts():
            doc = orjson.loads(serializer({"type": "ecs", "include_original": False}).encode(alert))
            assert "microsoft" not in doc and doc["event"]["id"] == alert["id"]
