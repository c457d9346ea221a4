"""Sources: read alerts upstream and emit batches with the checkpoint progress they earn.

``SOURCES`` is the closed registry from the config ``type`` tag to the source class.
"""

from __future__ import annotations

from agent.sources.base import Source, SourceContext, SourceFactory, Stopping
from agent.sources.config import SourceConfig
from agent.sources.graph.source import GraphSecuritySource

SOURCES: dict[str, SourceFactory] = {
    "graph_security": GraphSecuritySource,
}


def build_source(config: SourceConfig) -> Source:
    """Build the source a config selects."""
    return SOURCES[config.type](config)


__all__ = ["SOURCES", "Source", "SourceContext", "Stopping", "build_source"]
