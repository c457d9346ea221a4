"""docs/configuration.md is the rendering of the config models; it cannot drift from them."""

from __future__ import annotations

from pathlib import Path

from agent.config.reference import render
from agent.config.settings import AgentSettings
from agent.sinks.config import SinkConfig
from agent.sources.config import SourceConfig

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


class TestConfigReference:
    def test_committed_reference_is_current(self) -> None:
        """Regenerate with: python -m agent.config.reference > docs/configuration.md"""
        assert DOC.read_text() == render(), (
            "docs/configuration.md is stale: run python -m agent.config.reference"
        )

    def test_every_key_and_type_is_listed(self) -> None:
        """Each top-level key, each nested log/http key and each sink/source type tag appears."""
        text = render()
        for name in AgentSettings.model_fields:
            if name not in ("sources", "sinks"):
                assert f"| `{name}` |" in text
        for key in ("log.path", "http.address", "queue.when_full", "credential.token_file", "tls.ca_file"):
            assert f"| `{key}` |" in text
        from typing import get_args

        from agent.config.reference import _models, _tag

        for union in (SourceConfig, SinkConfig):
            for model in _models(union):
                assert f'### `type = "{_tag(model)}"`' in text
        assert "| `client_secret` | secret (optional) | unset |" in text
        assert get_args(SinkConfig)

    def test_every_key_has_a_description(self) -> None:
        """Each key's meaning column is non-empty: add a ``#:`` comment above the field that lacks one."""
        family = variant = ""
        missing = []
        for line in render().splitlines():
            if line.startswith("## "):
                family, variant = line[3:], ""
            elif line.startswith("### "):
                variant = " " + line[4:]
            elif line.startswith("| `") and line.rstrip().endswith("|  |"):
                missing.append(f"{family}{variant}: {line.split('`')[1]}")
        assert missing == [], "keys without a description:\n" + "\n".join(missing)


class TestMetricsReference:
    def test_every_metric_is_documented(self) -> None:
        """docs/operations.md names every siem_agent_* metric the agent registers."""
        from prometheus_client import CollectorRegistry

        from agent.metrics import AgentMetrics

        registry = CollectorRegistry()
        AgentMetrics(registry)
        text = (DOC.parent / "operations.md").read_text()
        names = [
            f.name + ("_total" if f.type == "counter" else "")
            for f in registry.collect()
            if f.name.startswith("siem_agent_")
        ]
        missing = [n for n in names if f"`{n}`" not in text]
        assert missing == [], "add these to the metrics table in docs/operations.md"
