"""What ``siem-agent setup elasticsearch`` installs: a mappings component template, the ingest pipeline
and the index template of one elasticsearch sink, for Elasticsearch or OpenSearch.

Every field a codec writes is mapped explicitly (``ECS_FIELDS`` for the ``ecs`` codec, ``GRAPH_FIELDS``
for the raw ``json`` alert) and the root is ``dynamic: false``: nothing is mapped by guessing, so no
alert can be rejected for a type conflict (Graph evidence is polymorphic: ``appId`` is a number in
cloudApplicationEvidence and a GUID in oauthApplicationEvidence). The polymorphic parts (the original
alert under ``microsoft.graph.alert``, the raw alert's evidence, comments, additionalData) are
``flattened`` on Elasticsearch and ``flat_object`` on OpenSearch: searchable as keywords, never
conflicting. Types are those of ECS 8.11.0 (checked against the official field list by the tests);
on OpenSearch, ``match_only_text``/``wildcard`` are kept (it has both) and ``constant_keyword``
becomes ``keyword`` (OpenSearch's needs a fixed value). ``deploy/elastic/`` holds the same content
as files (``python -m agent.commands.es_content deploy/elastic``; a test keeps them equal).
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson

Flavor = Literal["elasticsearch", "opensearch"]
PIPELINE = "siem-agent-graph-alert"
_FLAT = "flattened"


def _words(text: str) -> list[str]:
    return text.split()


#: ECS field -> ECS 8.11.0 type, for every field the ``ecs`` codec writes (tests/codecs/test_ecs.py).
ECS_FIELDS: dict[str, str] = {
    "@timestamp": "date",
    "message": "match_only_text",
    "tags": "keyword",
    "ecs.version": "keyword",
    "data_stream.type": "constant_keyword",
    "data_stream.dataset": "constant_keyword",
    "data_stream.namespace": "constant_keyword",
    **{f"event.{k}": "keyword" for k in _words("kind category type module dataset id provider url")},
    **{f"event.{k}": "date" for k in _words("created start end ingested")},
    "event.severity": "long",
    "event.risk_score": "float",
    **{f"rule.{k}": "keyword" for k in _words("id name description category ruleset")},
    "threat.framework": "keyword",
    **{f"threat.{k}": "keyword" for k in ("technique.id", "technique.reference", "tactic.id", "tactic.name")},
    "threat.technique.subtechnique.id": "keyword",
    "threat.technique.subtechnique.reference": "keyword",
    "threat.tactic.reference": "keyword",
    "threat.group.name": "keyword",
    "threat.software.name": "keyword",
    **{f"host.{k}": "keyword" for k in ("name", "hostname", "id", "domain", "os.name", "os.version")},
    "host.ip": "ip",
    **{f"user.{k}": "keyword" for k in _words("name domain id full_name email")},
    **{f"file.{k}": "keyword" for k in ("name", "directory", "path", "hash.md5", "hash.sha1", "hash.sha256")},
    "file.size": "long",
    "process.pid": "long",
    "process.parent.pid": "long",
    "process.command_line": "wildcard",
    "process.start": "date",
    "process.parent.start": "date",
    **{
        f"process.{p}{k}": "keyword"
        for p in ("", "parent.")
        for k in ("name", "executable", "hash.md5", "hash.sha1", "hash.sha256")
    },
    "process.user.name": "keyword",
    "process.user.id": "keyword",
    **{f"registry.{k}": "keyword" for k in ("hive", "key", "path", "value", "data.type")},
    "registry.data.strings": "wildcard",
    **{f"email.{k}.address": "keyword" for k in ("from", "sender", "to")},
    "email.subject": "keyword",
    "email.message_id": "wildcard",
    "email.direction": "keyword",
    "email.delivery_timestamp": "date",
    "source.ip": "ip",
    "url.full": "wildcard",
    "related.ip": "ip",
    "related.user": "keyword",
    "related.hosts": "keyword",
    "related.hash": "keyword",
    "organization.id": "keyword",
    # ECS ``labels``: custom keyword pairs; only on a version the agent's own write-back produced.
    **dict.fromkeys(
        _words("labels.siem_agent_origin labels.siem_agent_request_id labels.siem_agent_requested_by"),
        "keyword",
    ),
    "cloud.account.id": "keyword",
    "observer.vendor": "keyword",
    "observer.product": "keyword",
    "microsoft.graph.alert": _FLAT,
}

#: alerts_v2 property -> type, for the raw alert the ``json`` codec writes (+ the sink's ``@timestamp``).
GRAPH_FIELDS: dict[str, str] = {
    "@timestamp": "date",
    **dict.fromkeys(
        _words(
            "@odata.type id providerAlertId incidentId status severity classification determination "
            "serviceSource detectionSource detectorId tenantId category assignedTo alertWebUrl "
            "incidentWebUrl actorDisplayName threatDisplayName threatFamilyName mitreTechniques "
            "systemTags alertPolicyId productName investigationState"
        ),
        "keyword",
    ),
    "title": "match_only_text",
    "description": "match_only_text",
    "recommendedActions": "match_only_text",
    **dict.fromkeys(
        _words(
            "createdDateTime lastUpdateDateTime resolvedDateTime firstActivityDateTime lastActivityDateTime"
        ),
        "date",
    ),
    **dict.fromkeys(_words("evidence comments additionalData customDetails"), _FLAT),
    # Only on a version the agent's own write-back produced (agent.writeback.loop).
    **dict.fromkeys(_words("siemAgent.origin siemAgent.requestId siemAgent.requestedBy"), "keyword"),
}


@dataclass(frozen=True)
class Resource:
    """One thing to PUT: its kind (for messages), name, API path and body."""

    kind: Literal["component template", "ingest pipeline", "index template"]
    name: str
    path: str
    body: dict[str, Any]


def _field(es_type: str, flavor: Flavor) -> dict[str, Any]:
    if es_type == _FLAT:
        # ignore_above keeps a long text leaf below Lucene's 32766-byte term limit
        return {"type": "flat_object"} if flavor == "opensearch" else {"type": _FLAT, "ignore_above": 8191}
    if es_type == "constant_keyword" and flavor == "opensearch":
        es_type = "keyword"
    if es_type == "keyword":
        return {"type": "keyword", "ignore_above": 1024}
    return {"type": es_type}


def mappings(fields: dict[str, str], flavor: Flavor) -> dict[str, Any]:
    """``{"dynamic": false, "properties": ...}`` with every dotted field as nested objects."""
    root: dict[str, Any] = {}
    for path, es_type in fields.items():
        # "@odata.type" is one property of the raw alert, not an object "@odata"
        parts = [path] if path.startswith("@") else path.split(".")
        props = root
        for part in parts[:-1]:
            props = props.setdefault(part, {"properties": {}})["properties"]
        props[parts[-1]] = _field(es_type, flavor)
    return {"dynamic": False, "properties": root}


def _stamp(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` with ``_meta`` naming us and the content's hash (how setup recognises "unchanged")."""
    digest = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
    return {**body, "_meta": {"managed_by": "siem-agent", "content_sha256": digest}}


def index_pattern(index: str, data_stream: bool) -> str:
    """The data stream's ``logs-<dataset>-*`` (every namespace), or the index name itself."""
    if data_stream and index.count("-") >= 2:
        return index.rsplit("-", 1)[0] + "-*"
    return index


def resources(index: str, data_stream: bool, codec: str, pipeline: bool, flavor: Flavor) -> list[Resource]:
    """What to install for one sink, in order (components and pipeline before the index template)."""
    name = "siem-agent-ecs" if codec == "ecs" else "siem-agent-graph"
    component = f"{name}@mappings"
    pattern = index_pattern(index, data_stream)
    fields = ECS_FIELDS if codec == "ecs" else GRAPH_FIELDS
    out = [
        Resource(
            "component template",
            component,
            f"/_component_template/{component}",
            _stamp({"template": {"mappings": mappings(fields, flavor)}}),
        )
    ]
    template: dict[str, Any] = {
        "index_patterns": [pattern],
        "composed_of": [component],
        "priority": 200,  # above the built-in logs-*-* template (100)
    }
    if data_stream:
        template["data_stream"] = {}
    if pipeline:
        out.append(Resource("ingest pipeline", PIPELINE, f"/_ingest/pipeline/{PIPELINE}", pipeline_body()))
        template["template"] = {"settings": {"index.default_pipeline": PIPELINE}}
    stem = pattern.rstrip("*").rstrip("-")
    name = f"siem-agent-{stem}"
    out.append(Resource("index template", name, f"/_index_template/{name}", _stamp(template)))
    return out


def pipeline_body() -> dict[str, Any]:
    """Sets ``event.ingested`` to the time Elasticsearch received the document (re-sends included)."""
    body: dict[str, Any] = {
        "processors": [
            {
                "set": {
                    "field": "event.ingested",
                    "value": "{{{_ingest.timestamp}}}",
                    "tag": "siem-agent-event-ingested",
                }
            }
        ]
    }
    digest = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
    # pipelines have no _meta on every version we target: the hash rides in the description
    body["description"] = f"siem-agent: event.ingested = arrival time (content {digest})"
    return body


def write_deploy(target: Path) -> list[Path]:
    """The default configuration's content as files (config/elastic.toml: ecs, data stream, pipeline)."""
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for flavor in ("elasticsearch", "opensearch"):
        for res in resources("logs-microsoft_graph.alert-default", True, "ecs", True, flavor):
            kind = res.kind.replace(" ", "-")
            path = target / flavor / f"{kind}.{res.name}.json"
            path.parent.mkdir(exist_ok=True)
            text = orjson.dumps(res.body, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
            path.write_bytes(text + b"\n")
            written.append(path)
    return written


if __name__ == "__main__":
    for written_path in write_deploy(Path(sys.argv[1] if len(sys.argv) > 1 else "deploy/elastic")):
        print(written_path)
