"""ECS serializer: the alert mapped to Elastic Common Schema 8.11, one JSON object per message.

Made for Elastic Security's external-alert promotion rules ("External Alerts": ``event.kind: alert``
over ``logs-*``, severity from ``event.severity`` 21/47/73/99, look-back on ``event.ingested``):

* ``event.severity`` (and ``event.risk_score``) on that 21/47/73/99 scale by default;
* ``event.ingested``: when the document was encoded, i.e. sent (cached per second). The shipped
  ingest pipeline (``siem-agent setup elasticsearch``) overwrites it with the time Elasticsearch
  received it, which also covers re-sends after an outage;
* ``event.category`` / ``event.type`` from the evidence types (``ecs_evidence.EVIDENCE``);
* ``data_stream.*`` and ``event.dataset`` from the codec's ``dataset`` / ``namespace``, which the
  elasticsearch sink checks against its index;
* host, user, file, process, registry, email and url fields from *every* evidence item.

The whole alert is kept under ``microsoft.graph.alert`` (``include_original``); the shipped index
template maps it as ``flattened`` (``flat_object`` on OpenSearch). Size bounding and surrogate repair
are those of the JSON codec. Field table: docs/codecs.md; receiving side: docs/elastic.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from agent.codecs.base import TruncateHook
from agent.codecs.config import EcsCodecConfig
from agent.codecs.ecs_evidence import Fields, _s, collect, nest, process_accounts
from agent.codecs.json import dumps, fit_json
from agent.model import Alert

ECS_VERSION = "8.11.0"

#: Graph ``category`` values that are MITRE ATT&CK enterprise tactics: (tactic id, display name).
TACTICS: dict[str, tuple[str, str]] = {
    "Reconnaissance": ("TA0043", "Reconnaissance"),
    "ResourceDevelopment": ("TA0042", "Resource Development"),
    "InitialAccess": ("TA0001", "Initial Access"),
    "Execution": ("TA0002", "Execution"),
    "Persistence": ("TA0003", "Persistence"),
    "PrivilegeEscalation": ("TA0004", "Privilege Escalation"),
    "DefenseEvasion": ("TA0005", "Defense Evasion"),
    "CredentialAccess": ("TA0006", "Credential Access"),
    "Discovery": ("TA0007", "Discovery"),
    "LateralMovement": ("TA0008", "Lateral Movement"),
    "Collection": ("TA0009", "Collection"),
    "CommandAndControl": ("TA0011", "Command and Control"),
    "Exfiltration": ("TA0010", "Exfiltration"),
    "Impact": ("TA0040", "Impact"),
}
#: Graph categories that describe malware rather than a tactic: ``event.category`` gains ``malware``.
MALWARE_CATEGORIES = frozenset({"Malware", "Ransomware", "UnwantedSoftware"})


def _put(target: dict[str, Any], key: str, value: Any) -> None:
    if value is not None and value not in ("", [], {}):
        target[key] = value


def _threat(alert: Alert) -> dict[str, Any]:
    threat: dict[str, Any] = {}
    techniques = alert.get("mitreTechniques")
    techniques = [t for t in techniques if _s(t)] if techniques.__class__ is list else []
    if techniques:
        base = list(dict.fromkeys(t.split(".")[0] for t in techniques))
        subs = [t for t in techniques if "." in t]
        technique: dict[str, Any] = {
            "id": base,
            "reference": [f"https://attack.mitre.org/techniques/{t}/" for t in base],
        }
        if subs:
            technique["subtechnique"] = {
                "id": subs,
                "reference": [f"https://attack.mitre.org/techniques/{t.replace('.', '/')}/" for t in subs],
            }
        threat["technique"] = technique
    tactic = TACTICS.get(_s(alert.get("category")) or "")
    if tactic is not None:
        tactic_id, name = tactic
        threat["tactic"] = {
            "id": [tactic_id],
            "name": [name],
            "reference": [f"https://attack.mitre.org/tactics/{tactic_id}/"],
        }
    if threat:
        threat["framework"] = "MITRE ATT&CK"
    if _s(alert.get("actorDisplayName")):
        threat["group"] = {"name": alert["actorDisplayName"]}
    if _s(alert.get("threatFamilyName")):
        threat["software"] = {"name": alert["threatFamilyName"]}
    return threat


def event_types(categories: list[str]) -> list[str]:
    """``event.type`` values expected for ``categories`` (ECS: ``registry`` has no ``info``)."""
    types = ["info"] if any(c != "registry" for c in categories) else []
    if "registry" in categories:
        types.append("access")
    return types


class _Ingested:
    """``event.ingested`` text, formatted once per second of ``now()``."""

    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now
        self._second = -1
        self._text = ""

    def __call__(self) -> str:
        second = int(self._now())
        if second != self._second:
            self._second = second
            self._text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return self._text


def _writeback_labels(alert: Alert) -> dict[str, str]:
    """``labels.siem_agent_*`` for a version the agent's own write-back produced (agent.writeback.loop)."""
    mark = alert.get("siemAgent")
    if not isinstance(mark, Mapping) or not _s(mark.get("origin")):
        return {}
    labels = {"siem_agent_origin": mark["origin"]}
    for key, field in (("siem_agent_request_id", "requestId"), ("siem_agent_requested_by", "requestedBy")):
        if _s(mark.get(field)):
            labels[key] = mark[field]
    return labels


def to_ecs(
    alert: Alert,
    config: EcsCodecConfig,
    ingested: str | None = None,
) -> dict[str, Any]:
    """Build the ECS document for ``alert`` (a new dict; ``alert`` is not modified)."""
    severities = config.severity_map
    fields: Fields = {}
    categories = collect(alert.get("evidence"), fields)
    if _s(alert.get("category")) in MALWARE_CATEGORIES and "malware" not in categories:
        categories.append("malware")
    if not categories:
        categories.append("intrusion_detection")
    if "user.name" not in fields and "process.user.name" in fields:  # no user evidence: who ran it
        process_accounts(alert.get("evidence"), fields)

    doc: dict[str, Any] = {}
    _put(doc, "@timestamp", _s(alert.get("lastUpdateDateTime")) or _s(alert.get("createdDateTime")))
    doc["ecs"] = {"version": ECS_VERSION}
    doc["data_stream"] = {"type": "logs", "dataset": config.dataset, "namespace": config.namespace}
    severity = _s(alert.get("severity"))
    fallback = severities.get("unknown", 47)
    score = severities.get(severity, fallback) if severity else fallback
    event: dict[str, Any] = {
        "kind": "alert",
        "category": categories,
        "type": event_types(categories),
        "module": "microsoft_graph",
        "dataset": config.dataset,
        "severity": score,
        "risk_score": float(score),
    }
    _put(event, "id", _s(alert.get("id")))
    _put(event, "created", _s(alert.get("createdDateTime")))
    _put(event, "start", _s(alert.get("firstActivityDateTime")))
    _put(event, "end", _s(alert.get("lastActivityDateTime")))
    _put(event, "ingested", ingested)
    _put(event, "provider", _s(alert.get("serviceSource")))
    _put(event, "url", _s(alert.get("alertWebUrl")))
    doc["event"] = event
    _put(doc, "message", _s(alert.get("title")))
    rule: dict[str, Any] = {}
    for key, field in (
        ("id", "detectorId"),
        ("name", "title"),
        ("description", "description"),
        ("category", "category"),
        ("ruleset", "detectionSource"),
    ):
        _put(rule, key, _s(alert.get(field)))
    _put(doc, "rule", rule)
    _put(doc, "threat", _threat(alert))
    nest(fields, doc)
    tenant = _s(alert.get("tenantId"))
    if tenant:
        doc["organization"] = {"id": tenant}
        doc["cloud"] = {"account": {"id": tenant}}
    doc["observer"] = {"vendor": "Microsoft", "product": _s(alert.get("productName")) or "Graph Security"}
    tags = alert.get("systemTags")
    _put(doc, "tags", [t for t in tags if _s(t)] if tags.__class__ is list else None)
    _put(doc, "labels", _writeback_labels(alert))
    if config.include_original:
        doc["microsoft"] = {"graph": {"alert": alert}}
    return doc


class EcsSerializer:
    """Encodes an alerts_v2 alert as one ECS JSON document (UTF-8, no trailing newline)."""

    def __init__(
        self,
        config: EcsCodecConfig,
        on_truncate: TruncateHook | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._hook = on_truncate
        self._max = config.max_message_bytes
        self._ingested = _Ingested(now)

    def encode(self, alert: Alert) -> bytes:
        """Return the ECS message; raises ``EncodeError`` for a value JSON cannot hold."""
        return self.encode_within(alert, self._max)

    def encode_within(self, alert: Alert, max_bytes: int) -> bytes:
        """Return the ECS message in at most ``max_bytes``."""
        doc = to_ecs(alert, self.config, self._ingested())
        out = dumps(doc)
        return out if len(out) <= max_bytes else fit_json(doc, max_bytes, self._hook)
