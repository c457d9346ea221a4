"""Verified from outside, at default settings, on Microsoft's documentation samples (and the
all-evidence synthetic alert): what each SIEM needs to see the alerts as alerts."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from agent.codecs.paths import join_path
from tests.codecs.helpers import doc_samples, parse_cef, serializer, synthetic_alert

ALERTS = [*doc_samples(), synthetic_alert()]
IDS = [f"{i}-{a['id'][:12]}" for i, a in enumerate(ALERTS)]


def values(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def evidence(alert: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e for e in alert.get("evidence", []) if str(e.get("@odata.type", "")).endswith("." + kind)]


@pytest.mark.parametrize("alert", ALERTS, ids=IDS)
def test_ecs_promotable_and_complete(alert: dict[str, Any]) -> None:
    """ECS: severity on Elastic's scale, event.ingested set, and every evidence item kept."""
    doc = orjson.loads(serializer({"type": "ecs"}).encode(alert))
    event = doc["event"]
    assert event["kind"] == "alert" and event["severity"] in {21, 47, 73, 99}
    assert event["ingested"].endswith("Z") and doc["message"] == alert["title"]
    for dev in evidence(alert, "deviceEvidence"):
        assert (dev.get("deviceDnsName") or dev["hostName"]) in values(doc["host"]["name"])
    for f in evidence(alert, "fileEvidence"):
        d = f["fileDetails"]
        assert join_path(d["filePath"], d["fileName"]) in values(doc["file"]["path"])
    for p in evidence(alert, "processEvidence"):
        assert p["processId"] in values(doc["process"]["pid"])
    for u in evidence(alert, "userEvidence"):
        assert u["userAccount"]["userPrincipalName"] in values(doc["user"]["email"])
    for r in evidence(alert, "registryKeyEvidence") + evidence(alert, "registryValueEvidence"):
        assert r["registryKey"] in values(doc["registry"]["key"])
    for u in evidence(alert, "urlEvidence"):
        assert u["url"] in values(doc["url"]["full"])
    for ip in evidence(alert, "ipEvidence"):
        assert ip["ipAddress"] in values(doc["related"]["ip"])


def first_file(alert: dict[str, Any]) -> dict[str, Any] | None:
    """The first file evidence's fileDetails that names a directory and a file, if any."""
    for f in evidence(alert, "fileEvidence"):
        d = f.get("fileDetails") or {}
        if isinstance(d.get("filePath"), str) and isinstance(d.get("fileName"), str):
            return d
    return None


@pytest.mark.parametrize("alert", ALERTS, ids=IDS)
def test_cef_file_path_ends_with_the_file_name(alert: dict[str, Any]) -> None:
    """CEF filePath is the full path (CommonSecurityLog.FilePath): present exactly when the alert has
    file evidence, ending with that evidence's file name."""
    _, ext = parse_cef(serializer({"type": "cef"}).encode(alert).decode())
    details = first_file(alert)
    assert ("filePath" in ext) == (details is not None), (ext.get("filePath"), details)
    if details is not None:
        name = details["fileName"]
        assert ext["filePath"].endswith("\\" + name) or ext["filePath"].endswith("/" + name), ext["filePath"]


def test_leef_event_ids_come_from_a_small_set() -> None:
    """LEEF EventID is the alert category: a handful of values, never a detector GUID."""
    event_ids = {serializer({"type": "leef"}).encode(a).decode().split("|")[4] for a in ALERTS}
    detectors = {a.get("detectorId") for a in ALERTS}
    assert event_ids <= {a["category"] for a in ALERTS} and not event_ids & detectors
    assert len(event_ids) <= 3
