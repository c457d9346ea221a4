"""QRadar receiving side: LEEF EventIDs come from a small set the shipped QID map covers, and every
non-predefined LEEF attribute we write has a custom event property in the shipped list."""

from __future__ import annotations

from tests.codecs.helpers import data_csv, doc_samples, serializer, synthetic_alert

QID_MAP = data_csv("../../deploy/qradar/qid-map.csv")
PROPERTIES = data_csv("../../deploy/qradar/custom-properties.csv")
#: LEEF 2.0 predefined attributes QRadar normalizes itself (IBM, "Predefined LEEF event attributes").
PREDEFINED = {"cat", "devTime", "devTimeFormat", "sev", "src", "dst", "srcPort", "dstPort", "usrName",
              "domain", "identHostName", "url", "proto", "policy", "resource", "identSrc"}  # fmt: skip
#: QRadar's high-level event categories and their IDs (IBM QRadar 7.5, "High-level event categories").
HIGH_LEVEL = {"Recon": 1000, "DoS": 2000, "Authentication": 3000, "Access": 4000, "Exploit": 5000,
              "Malware": 6000, "Suspicious Activity": 7000, "System": 8000, "Policy": 9000,
              "Unknown": 10000, "CRE": 12000, "Potential Exploit": 13000}  # fmt: skip


def leef(alert: dict[str, object]) -> tuple[str, dict[str, str]]:
    head = serializer({"type": "leef"}).encode(alert).decode().split("|", 6)
    return head[4], dict(p.split("=", 1) for p in head[6].split("^"))


def test_event_ids_are_few_and_all_mapped() -> None:
    """At default settings every sample's EventID is a row of the QID map (no GUIDs)."""
    mapped = {row["event_id"] for row in QID_MAP}
    for alert in [*doc_samples(), synthetic_alert()]:
        event_id, attrs = leef(alert)
        assert event_id in mapped, event_id
        assert attrs["cat"] == event_id  # the (EventID, cat) pair QRadar looks QIDs up by
    assert len(mapped) <= 30


def test_qid_map_rows_are_well_formed() -> None:
    """Each row names a real high-level category with its ID and a QRadar severity 0..10."""
    for row in QID_MAP:
        assert HIGH_LEVEL[row["high_level_category"]] == int(row["high_level_category_id"]), row
        assert 0 <= int(row["severity"]) <= 10 and row["qid_name"] and row["low_level_category"]


def test_every_custom_attribute_has_a_property() -> None:
    """Attributes QRadar does not know are listed as custom event properties (and nothing more)."""
    emitted: set[str] = set()
    for alert in [*doc_samples(), synthetic_alert()]:
        emitted |= set(leef(alert)[1])
    listed = {row["leef_key"] for row in PROPERTIES}
    assert emitted - PREDEFINED <= listed, (emitted - PREDEFINED) - listed
    assert listed <= emitted, listed - emitted
