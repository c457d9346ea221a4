"""ECS serializer: the alert mapped to Elastic Common Schema (8.x), one JSON object per message.

Fields come from the alert and from the first evidence of each known type (device -> ``host.*``,
user or process account -> ``user.*``, file -> ``file.*``, process -> ``process.*``, url ->
``url.full``); ``related.*`` collects every IP, user, host and hash of all evidence. Unknown evidence
types are ignored here and kept, like everything else, in the original alert under
``microsoft.graph.alert`` (``include_original``). The full table is in docs/codecs.md. Size bounding
and surrogate repair are those of the JSON codec.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent.codecs.base import TruncateHook
from agent.codecs.config import EcsCodecConfig
from agent.codecs.json import dumps, fit_json
from agent.codecs.paths import evidence_index
from agent.model import Alert

ECS_VERSION = "8.11.0"
_Ev = Mapping[str, Any]


def _s(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _strs(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str) and v] if isinstance(value, list) else []


def _put(target: dict[str, Any], key: str, value: Any) -> None:
    if value is not None and value not in ("", [], {}):
        target[key] = value


def _first(index: dict[str, list[_Ev]], kind: str) -> _Ev:
    items = index.get(kind)
    return items[0] if items else {}


def _sub(obj: _Ev, key: str) -> _Ev:
    value = obj.get(key)
    return value if isinstance(value, Mapping) else {}


def _join_path(directory: str | None, name: str | None) -> str | None:
    if directory and name:
        sep = "\\" if "\\" in directory else "/"
        return directory.rstrip(sep) + sep + name
    return None


def _threat(alert: Alert) -> dict[str, Any]:
    techniques = _strs(alert.get("mitreTechniques"))
    threat: dict[str, Any] = {}
    if techniques:
        threat["framework"] = "MITRE ATT&CK"
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
    if _s(alert.get("category")):
        threat.setdefault("framework", "MITRE ATT&CK")
        threat["tactic"] = {"name": [alert["category"]]}
    return threat


def _related(index: dict[str, list[_Ev]]) -> dict[str, Any]:
    ips: list[Any] = []
    users: list[Any] = []
    hosts: list[Any] = []
    hashes: list[Any] = []
    for ev in index.get("*", ()):
        ips += [i for i in [ev.get("ipAddress"), *_strs(ev.get("ipInterfaces"))] if _s(i)]
        hosts += [h for h in (ev.get("deviceDnsName"), ev.get("hostName")) if _s(h)]
        account = _sub(ev, "userAccount")
        users += [u for u in (account.get("accountName"), account.get("userPrincipalName")) if _s(u)]
        for details in (_sub(ev, "fileDetails"), _sub(ev, "imageFile")):
            hashes += [h for h in (details.get("sha1"), details.get("sha256"), details.get("md5")) if _s(h)]
    related: dict[str, Any] = {}
    for key, values in (("ip", ips), ("user", users), ("hosts", hosts), ("hash", hashes)):
        _put(related, key, list(dict.fromkeys(values)))
    return related


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


def to_ecs(alert: Alert, severity_map: Mapping[str, int], include_original: bool) -> dict[str, Any]:
    """Build the ECS document for ``alert`` (a new dict; ``alert`` is not modified)."""
    index = evidence_index(alert)
    doc: dict[str, Any] = {}
    _put(doc, "@timestamp", _s(alert.get("lastUpdateDateTime")) or _s(alert.get("createdDateTime")))
    doc["ecs"] = {"version": ECS_VERSION}
    severity = alert.get("severity")
    event: dict[str, Any] = {"kind": "alert", "module": "microsoft_graph", "dataset": "microsoft_graph.alert"}
    _put(event, "id", _s(alert.get("id")))
    _put(event, "created", _s(alert.get("createdDateTime")))
    _put(event, "start", _s(alert.get("firstActivityDateTime")))
    _put(event, "end", _s(alert.get("lastActivityDateTime")))
    event["severity"] = (
        severity_map.get(severity, severity_map.get("unknown", 0)) if isinstance(severity, str) else 0
    )
    _put(event, "provider", _s(alert.get("serviceSource")))
    _put(event, "url", _s(alert.get("alertWebUrl")))
    doc["event"] = event
    _put(doc, "message", _s(alert.get("title")))
    rule: dict[str, Any] = {}
    for key, field in (("id", "detectorId"), ("name", "title"), ("description", "description")):
        _put(rule, key, _s(alert.get(field)))
    _put(rule, "category", _s(alert.get("category")))
    _put(rule, "ruleset", _s(alert.get("detectionSource")))
    _put(doc, "rule", rule)
    _put(doc, "threat", _threat(alert))

    device = _first(index, "deviceEvidence")
    host: dict[str, Any] = {}
    _put(host, "name", _s(device.get("deviceDnsName")) or _s(device.get("hostName")))
    _put(host, "hostname", _s(device.get("hostName")))
    _put(host, "id", _s(device.get("mdeDeviceId")))
    _put(host, "domain", _s(device.get("dnsDomain")) or _s(device.get("ntDomain")))
    _put(host, "ip", _strs(device.get("ipInterfaces")))
    if _s(device.get("osPlatform")):
        host["os"] = {"name": device["osPlatform"]}
    _put(doc, "host", host)

    process = _first(index, "processEvidence")
    account = _sub(_first(index, "userEvidence"), "userAccount") or _sub(process, "userAccount")
    user: dict[str, Any] = {}
    _put(user, "name", _s(account.get("accountName")))
    _put(user, "domain", _s(account.get("domainName")))
    _put(user, "id", _s(account.get("userSid")) or _s(account.get("azureAdUserId")))
    _put(user, "full_name", _s(account.get("displayName")))
    _put(doc, "user", user)

    details = _sub(_first(index, "fileEvidence"), "fileDetails")
    file: dict[str, Any] = {}
    _put(file, "name", _s(details.get("fileName")))
    _put(file, "directory", _s(details.get("filePath")))
    _put(file, "path", _join_path(_s(details.get("filePath")), _s(details.get("fileName"))))
    if isinstance(details.get("fileSize"), int):
        file["size"] = details["fileSize"]
    hashes: dict[str, Any] = {}
    for algo in ("md5", "sha1", "sha256"):
        _put(hashes, algo, _s(details.get(algo)))
    _put(file, "hash", hashes)
    _put(doc, "file", file)

    proc: dict[str, Any] = {}
    if isinstance(process.get("processId"), int):
        proc["pid"] = process["processId"]
    _put(proc, "command_line", _s(process.get("processCommandLine")))
    image = _sub(process, "imageFile")
    _put(proc, "name", _s(image.get("fileName")))
    _put(proc, "executable", _join_path(_s(image.get("filePath")), _s(image.get("fileName"))))
    if isinstance(process.get("parentProcessId"), int):
        proc["parent"] = {"pid": process["parentProcessId"]}
    _put(doc, "process", proc)

    url = _s(_first(index, "urlEvidence").get("url"))
    if url:
        doc["url"] = {"full": url}
    _put(doc, "related", _related(index))
    if _s(alert.get("tenantId")):
        doc["organization"] = {"id": alert["tenantId"]}
    doc["observer"] = {"vendor": "Microsoft", "product": _s(alert.get("productName")) or "Graph Security"}
    _put(doc, "tags", _strs(alert.get("systemTags")))
    _put(doc, "labels", _writeback_labels(alert))
    if include_original:
        doc["microsoft"] = {"graph": {"alert": alert}}
    return doc


class EcsSerializer:
    """Encodes an alerts_v2 alert as one ECS JSON document (UTF-8, no trailing newline)."""

    def __init__(self, config: EcsCodecConfig, on_truncate: TruncateHook | None = None) -> None:
        self.config = config
        self._hook = on_truncate
        self._max = config.max_message_bytes
        self._severity = dict(config.severity_map)

    def encode(self, alert: Alert) -> bytes:
        """Return the ECS message; raises ``EncodeError`` for a value JSON cannot hold."""
        return self.encode_within(alert, self._max)

    def encode_within(self, alert: Alert, max_bytes: int) -> bytes:
        """Return the ECS message in at most ``max_bytes``."""
        doc = to_ecs(alert, self._severity, self.config.include_original)
        out = dumps(doc)
        return out if len(out) <= max_bytes else fit_json(doc, max_bytes, self._hook)
