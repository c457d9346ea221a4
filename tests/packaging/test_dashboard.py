"""The Grafana dashboard only queries metrics the agent exports (it cannot drift from metrics.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import CollectorRegistry

from agent.metrics import AgentMetrics

DASHBOARD = Path(__file__).resolve().parents[2] / "dashboards" / "siem-agent.json"


class TestDashboard:
    def test_every_queried_metric_exists(self) -> None:
        """Each siem_agent_*/process_* name in a panel query is registered by AgentMetrics."""
        registry = CollectorRegistry()
        AgentMetrics(registry)
        names = set()
        for family in registry.collect():
            # Counters are exported as <name>_total; histograms as <name>_bucket/_sum/_count.
            suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}.get(
                family.type, [""]
            )
            names.update(family.name + suffix for suffix in suffixes)
        dash = json.loads(DASHBOARD.read_text())
        queried = set()
        for panel in dash["panels"]:
            for target in panel["targets"]:
                queried.update(re.findall(r"\b((?:siem_agent|process)_[a-z_]+)\b", target["expr"]))
        assert queried, "dashboard has no queries"
        missing = sorted(q for q in queried if q not in names)
        assert missing == []
