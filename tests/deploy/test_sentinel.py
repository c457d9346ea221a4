"""Sentinel receiving side: the ARM template's transformKql, stream declaration and table agree with
each other and with what the json codec emits."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import orjson

from tests.codecs.helpers import doc_samples, serializer, synthetic_alert

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE: dict[str, Any] = orjson.loads(
    (ROOT / "deploy" / "sentinel" / "graph-security-alerts.json").read_bytes()
)
RESOURCES = {r["type"]: r for r in TEMPLATE["resources"]}
TABLE = {
    c["name"]: c["type"]
    for c in RESOURCES["Microsoft.OperationalInsights/workspaces/tables"]["properties"]["schema"]["columns"]
}
DCR = RESOURCES["Microsoft.Insights/dataCollectionRules"]["properties"]
STREAM_NAME = TEMPLATE["variables"]["streamName"]
STREAM = {c["name"]: c["type"] for c in DCR["streamDeclarations"][STREAM_NAME]["columns"]}
#: Column names the Logs Ingestion API reserves (logs-ingestion-api-overview).
RESERVED = {"_ResourceId", "id", "_SubscriptionId", "TenantId", "Type", "UniqueId", "Title"}
SECURITY_ALERT_STYLE = {"TimeGenerated", "AlertId", "AlertName", "AlertSeverity", "Status", "Classification",
                        "Determination", "ProviderName", "DetectionSource", "ProductName", "IncidentId",
                        "AlertTenantId", "Description", "AlertLink", "Tactics", "Techniques", "StartTime",
                        "EndTime", "Entities"}  # fmt: skip


def projection() -> dict[str, str]:
    """``column -> expression`` of the transformKql's single ``project``."""
    kql = TEMPLATE["variables"]["transformKql"]
    assert kql.startswith("source\n| project\n") and kql.count("|") == 1
    body = kql.split("| project\n", 1)[1]
    return dict(part.strip().split(" = ", 1) for part in body.split(",\n"))


def test_projected_columns_are_the_table() -> None:
    """The transform outputs exactly the table's columns, SecurityAlert-style, none reserved."""
    assert list(projection()) == list(TABLE)
    assert set(TABLE) >= SECURITY_ALERT_STYLE and not set(TABLE) & RESERVED
    assert TABLE["TimeGenerated"] == "datetime" and TABLE["Entities"] == "dynamic"
    assert all(re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,44}", name) for name in TABLE)


def test_every_expression_reads_declared_stream_columns_of_the_right_type() -> None:
    """Each projected expression reads only declared input columns; types carry over."""
    for column, expr in projection().items():
        refs = set(re.findall(r"\b([a-z][A-Za-z]*)\b(?!\()", expr.replace('"Microsoft"', "")))
        assert refs <= set(STREAM), (column, refs - set(STREAM))
        if expr in STREAM:
            assert STREAM[expr] == TABLE[column], column
        elif TABLE[column] == "string":
            assert expr.startswith(("tostring(", '"')), column


def test_stream_declaration_is_what_the_json_codec_emits() -> None:
    """Every declared input column is a property the json codec writes (for some sample)."""
    emitted: set[str] = set()
    for alert in [*doc_samples(), synthetic_alert()]:
        emitted |= set(orjson.loads(serializer({"type": "json"}).encode(alert)))
    assert set(STREAM) <= emitted, set(STREAM) - emitted


def test_wiring_role_outputs_and_example_config() -> None:
    """DCR -> DCE and workspace, Monitoring Metrics Publisher on the DCR, outputs for the sink."""
    flow = DCR["dataFlows"][0]
    assert (
        flow["streams"] == ["[variables('streamName')]"]
        and flow["outputStream"] == "[variables('outputStream')]"
    )
    assert TEMPLATE["variables"]["outputStream"] == "[concat('Custom-', parameters('tableName'))]"
    assert TEMPLATE["parameters"]["tableName"]["defaultValue"].endswith("_CL")
    role = RESOURCES["Microsoft.Authorization/roleAssignments"]["properties"]
    assert TEMPLATE["variables"]["monitoringMetricsPublisher"] == "3913510d-42f4-4e42-8a64-420c390055eb"
    assert (
        "monitoringMetricsPublisher" in role["roleDefinitionId"]
        and role["principalType"] == "ServicePrincipal"
    )
    assert set(TEMPLATE["outputs"]) == {"endpoint", "dcr_immutable_id", "stream"}
    sink = tomllib.loads((ROOT / "config" / "sentinel.toml").read_text())["sinks"][0]
    assert sink["stream"] == STREAM_NAME and sink["codec"] == {"type": "json"}
