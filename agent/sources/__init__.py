"""Sources: read alerts upstream and emit batches with the checkpoint progress they earn.

``SOURCES`` is the closed registry from the config ``type`` tag to the source class.
"""

from __future__ import annotations

from agent.clock import Clock
from agent.metrics import AgentMetrics
from agent.sources.base import Source, SourceContext, SourceFactory, Stopping
from agent.sources.config import SourceConfig
from agent.sources.graph.shared import GraphShared
from agent.sources.graph.source import GraphSecuritySource
from agent.sources.graph.writes import WRITE_PERMISSIONS, Entity, GraphError, GraphWrites, open_writes

SOURCES: dict[str, SourceFactory] = {
    "graph_security": GraphSecuritySource,
}


def build_source(
    config: SourceConfig, clock: Clock, metrics: AgentMetrics, shared: GraphShared | None = None
) -> Source:
    """Build the source a config selects (``shared``: what the process's Graph sources share)."""
    return SOURCES[config.type](config, clock, metrics, shared)


__all__ = [
    "SOURCES",
    "WRITE_PERMISSIONS",
    "Entity",
    "GraphError",
    "GraphShared",
    "GraphWrites",
    "Source",
    "SourceConfig",
    "SourceContext",
    "Stopping",
    "build_source",
    "open_writes",
]
