"""Elastic receiving side: the shipped templates cover what the codecs write, with ECS's types, and
``siem-agent setup elasticsearch`` installs them (osmem-server for the template APIs it has, a fake
Elasticsearch for the ingest pipeline and the Elasticsearch flavour)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from agent.cli import main
from agent.codecs.config import EcsCodecConfig
from agent.codecs.ecs import EcsSerializer
from agent.commands.es_content import ECS_FIELDS, GRAPH_FIELDS, mappings, resources, write_deploy
from agent.commands.setup_es import setup_sink
from agent.model import Event
from agent.sinks import SinkContext
from agent.sinks.http.elasticsearch import document_id
from tests.codecs.helpers import data_csv, doc_samples, leaves, synthetic_alert
from tests.fakes.es_templates import FakeElasticsearch, fake_es
from tests.fakes.osmem import Osmem, osmem
from tests.sinks.conftest import build, config, ctx, metrics

__all__ = ["ctx", "fake_es", "metrics", "osmem"]

ROOT = Path(__file__).resolve().parents[2]
ECS = {row["field"]: row["type"] for row in data_csv("ecs/ecs-8.11.0-fields.csv")}


def marked_alert() -> dict[str, Any]:
    """A version the agent's own write-back produced, as the poller forwards it (agent.writeback.loop)."""
    alert = synthetic_alert()
    alert["siemAgent"] = {"origin": "siem-agent-writeback", "requestId": "r-1", "requestedBy": "splunk"}
    return alert


def ecs_docs() -> list[dict[str, Any]]:
    ser = EcsSerializer(EcsCodecConfig(), now=lambda: 1_790_000_000.0)
    return [orjson.loads(ser.encode(a)) for a in [*doc_samples(), synthetic_alert(), marked_alert()]]


class TestTemplateCoversCodecs:
    def test_every_ecs_field_written_is_mapped_with_its_ecs_type(self) -> None:
        """The component template maps every field the ecs codec writes, typed as ECS 8.11.0 says."""
        for doc in ecs_docs():
            for path in leaves(doc):
                if not path.startswith("microsoft.graph.alert."):
                    assert path in ECS_FIELDS, f"{path} is written but not in the template"
        for path, es_type in ECS_FIELDS.items():
            if path.startswith("labels."):  # ECS: labels is an object of custom keyword values
                assert ECS.get("labels") == "object" and es_type == "keyword", path
            elif path != "microsoft.graph.alert":
                assert ECS.get(path) == es_type, f"{path}: template {es_type}, ECS {ECS.get(path)}"

    def test_every_raw_alert_property_is_mapped(self) -> None:
        """The json codec's template maps every top-level alerts_v2 property of the samples."""
        flat = {k.split(".")[0] if not k.startswith("@") else k for k in GRAPH_FIELDS}
        for alert in [*doc_samples(), synthetic_alert(), marked_alert()]:
            assert set(alert) <= flat, set(alert) - flat
        assert {f"siemAgent.{k}" for k in marked_alert()["siemAgent"]} <= set(GRAPH_FIELDS)

    def test_polymorphic_parts_are_flattened_and_nothing_is_dynamic(self) -> None:
        """Evidence and the original alert are flattened (flat_object on OpenSearch); dynamic is off."""
        es = mappings(ECS_FIELDS, "elasticsearch")
        assert es["dynamic"] is False
        assert (
            es["properties"]["microsoft"]["properties"]["graph"]["properties"]["alert"]["type"] == "flattened"
        )
        os_ = mappings(GRAPH_FIELDS, "opensearch")
        assert os_["properties"]["evidence"] == {"type": "flat_object"}
        assert os_["properties"]["@odata.type"]["type"] == "keyword"

    def test_deploy_files_are_the_generated_content(self, tmp_path: Path) -> None:
        """deploy/elastic/ equals what setup installs (regenerate: python -m agent.commands.es_content)."""
        for path in write_deploy(tmp_path):
            shipped = ROOT / "deploy" / "elastic" / path.relative_to(tmp_path)
            assert shipped.read_bytes() == path.read_bytes(), f"{shipped} is stale"

    def test_data_stream_template(self) -> None:
        """A data stream sink gets logs-<dataset>-* with data_stream {} and the pipeline as default."""
        index = resources("logs-microsoft_graph.alert-default", True, "ecs", True, "elasticsearch")[-1]
        assert index.body["index_patterns"] == ["logs-microsoft_graph.alert-*"]
        assert index.body["data_stream"] == {} and index.body["priority"] > 100
        assert index.body["template"]["settings"]["index.default_pipeline"] == "siem-agent-graph-alert"


def sink_table(url: str, **over: Any) -> dict[str, Any]:
    return {"type": "elasticsearch", "name": "es", "url": url, "index": "graph-alerts", **over}


class TestSetupAgainstOsmem:
    async def test_install_then_unchanged_then_alerts_are_accepted(
        self, osmem: Osmem, ctx: SinkContext
    ) -> None:
        """Setup creates the templates, a second run changes nothing, and every alert is stored."""
        table = sink_table(osmem.url, codec={"type": "json"}, ingest_pipeline=False, refresh="wait_for")
        lines: list[str] = []
        assert await setup_sink(config(table), lines.append)
        assert lines[0].startswith("es: opensearch 3.8.0 at http://127.0.0.1:")
        assert lines[1:] == [
            "es: component template siem-agent-graph@mappings: created",
            "es: index template siem-agent-graph-alerts: created",
        ]
        again: list[str] = []
        assert await setup_sink(config(table), again.append)
        assert all(line.endswith(": unchanged") for line in again[1:])
        sink = build(table, ctx)
        alerts = [*doc_samples(), synthetic_alert()]
        result = await sink.send([Event(a, orjson.dumps(a)) for a in alerts])
        assert not result.rejected and not result.retry
        assert osmem.count("graph-alerts") == len({document_id(a) for a in alerts})  # samples repeat ids
        await sink.aclose()

    async def test_without_the_template_polymorphic_evidence_is_rejected(
        self, osmem: Osmem, ctx: SinkContext
    ) -> None:
        """The reason the template exists: dynamic mapping rejects appId number-vs-GUID evidence."""
        sink = build(sink_table(osmem.url, codec={"type": "json"}), ctx)
        alert = synthetic_alert()
        result = await sink.send([Event(alert, orjson.dumps(alert))])
        await sink.aclose()
        assert list(result.rejected) == [0] and "evidence.appId" in result.rejected[0]

    def test_cli_ecs_sink_and_exit_codes(
        self, osmem: Osmem, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The command line sets up an ecs sink, prints one line per step and exits 0; a config
        without an elasticsearch sink exits 78."""
        source = (
            '[[sources]]\ntype = "graph_security"\nname = "t"\ntenant_id = "t"\nclient_id = "c"\n'
            'client_secret = "s"\n'
        )
        cfg = tmp_path / "agent.toml"
        cfg.write_text(
            f'state_dir = "{tmp_path}"\n{source}[[sinks]]\ntype = "elasticsearch"\nname = "es"\n'
            f'url = "{osmem.url}"\nindex = "alerts-ecs"\ningest_pipeline = false\n'
            'api_key = "c2VjcmV0LWtleQ=="\ncodec = { type = "ecs" }\n'
        )
        assert main(["setup", "elasticsearch", "--config", str(cfg)]) == 0
        out = capsys.readouterr().out
        assert "es: component template siem-agent-ecs@mappings: created" in out
        assert "es: index template siem-agent-alerts-ecs: created" in out
        assert "c2VjcmV0LWtleQ" not in out
        other = tmp_path / "none.toml"
        other.write_text(f'state_dir = "{tmp_path}"\n{source}[[sinks]]\ntype = "stdout"\nname = "out"\n')
        assert main(["setup", "elasticsearch", "--config", str(other)]) == 78
        assert "no elasticsearch sink" in capsys.readouterr().err


class TestSetupAgainstElasticsearch:
    async def test_pipeline_and_flattened_on_elasticsearch(self, fake_es: FakeElasticsearch) -> None:
        """On Elasticsearch: the pipeline first, then the index template naming it; api key sent."""
        table = sink_table(
            fake_es.url, index="logs-microsoft_graph.alert-default", data_stream=True, api_key="c2VjcmV0"
        ) | {"codec": {"type": "ecs"}}
        lines: list[str] = []
        assert await setup_sink(config(table), lines.append)
        assert lines == [
            f"es: elasticsearch 8.15.0 at {fake_es.url}",
            "es: component template siem-agent-ecs@mappings: created",
            "es: ingest pipeline siem-agent-graph-alert: created",
            "es: index template siem-agent-logs-microsoft_graph.alert: created",
        ]
        pipeline = fake_es.pipelines["siem-agent-graph-alert"]
        assert pipeline["processors"][0]["set"]["field"] == "event.ingested"
        assert "{{{_ingest.timestamp}}}" in pipeline["processors"][0]["set"]["value"]
        props = fake_es.components["siem-agent-ecs@mappings"]["template"]["mappings"]["properties"]
        assert props["microsoft"]["properties"]["graph"]["properties"]["alert"]["type"] == "flattened"
        assert props["data_stream"]["properties"]["dataset"]["type"] == "constant_keyword"
        assert all(h.get("Authorization") == "ApiKey c2VjcmV0" for _, _, h in fake_es.requests)
        again: list[str] = []
        assert await setup_sink(config(table), again.append)
        assert [line.rsplit(": ", 1)[1] for line in again[1:]] == ["unchanged"] * 3
        assert [m for m, _, _ in fake_es.requests].count("PUT") == 3  # nothing rewritten

    async def test_changed_content_is_updated(self, fake_es: FakeElasticsearch) -> None:
        """A template someone edited (or an older version of ours) is replaced and reported updated."""
        table = sink_table(fake_es.url, codec={"type": "json"}, ingest_pipeline=False)
        assert await setup_sink(config(table), [].append)
        fake_es.components["siem-agent-graph@mappings"]["_meta"]["content_sha256"] = "old"
        lines: list[str] = []
        assert await setup_sink(config(table), lines.append)
        assert lines[1] == "es: component template siem-agent-graph@mappings: updated"

    async def test_failure_stops_the_sink_with_the_reason(self, fake_es: FakeElasticsearch) -> None:
        """A refused PUT is reported with Elasticsearch's reason; the index template is not attempted."""
        fake_es.fail["/_component_template/siem-agent-graph@mappings"] = 403
        table = sink_table(fake_es.url, codec={"type": "json"}, password="hunter2", username="u")
        lines: list[str] = []
        assert not await setup_sink(config(table), lines.append)
        assert lines[-1] == (
            "es: FAILED: component template siem-agent-graph@mappings: "
            "HTTP 403 illegal_argument_exception: scripted failure"
        )
        assert not fake_es.indexes
        leaked = "hunter2" in "".join(lines)
        assert not leaked, "the password leaked into the output"

    async def test_unreachable_cluster(self) -> None:
        """No server: one clear line, no traceback."""
        lines: list[str] = []
        table = sink_table("http://127.0.0.1:9", timeout_secs=2)
        assert not await setup_sink(config(table), lines.append)
        assert lines == ["es: FAILED: cannot reach http://127.0.0.1:9: ClientConnectorError"]
