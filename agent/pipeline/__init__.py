"""The pipeline between sources and sinks: fan-out, bounded queues, sink runners, dead letters,
ordered acknowledgement and the commit path into the checkpoint."""

from __future__ import annotations

from agent.pipeline.commit import CommitPath, ProgressStore
from agent.pipeline.fanout import Lane, Pipeline

__all__ = ["CommitPath", "Lane", "Pipeline", "ProgressStore"]
