"""What a sink is built from: its config model and a ``SinkContext``.

The seam a sink implements (``Sink``, ``SendResult``, the optional ``Reopenable``) is the pipeline's,
``agent.pipeline.sink``; it is re-exported here for the sink modules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from agent.clock import Clock, SystemClock
from agent.metrics import AgentMetrics
from agent.pipeline.sink import HEALTHCHECK_TIMEOUT_SECS, Reopenable, SendResult, Sink

__all__ = ["HEALTHCHECK_TIMEOUT_SECS", "Reopenable", "SendResult", "Sink", "SinkContext", "SinkFactory"]


@dataclass(frozen=True, slots=True)
class SinkContext:
    """What a sink may use: its name, the agent's metrics, and the clock (``Retry-After`` dates)."""

    name: str
    metrics: AgentMetrics
    clock: Clock = field(default_factory=SystemClock)


class SinkFactory(Protocol):
    """A sink class: built from its config model and a context."""

    def __call__(self, config: Any, ctx: SinkContext) -> Sink: ...
