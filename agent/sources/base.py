"""The source seam.

A source reads alerts and hands them to the pipeline as ``Batch``es through ``SourceContext.emit``,
which blocks while a sink queue is full (backpressure). A source never writes the checkpoint: each
batch carries the ``Commit`` its delivery earns, and the ack tracker applies it in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from agent.checkpoint import StreamState
from agent.clock import Clock
from agent.health import Health
from agent.metrics import AgentMetrics
from agent.model import Batch


class Stopping(Exception):
    """Raised by ``emit`` when the agent is shutting down; the batch was not queued."""


@dataclass(frozen=True, slots=True)
class SourceContext:
    """What a source may use.

    ``emit`` queues a batch for every sink; it returns once queued and raises ``Stopping`` when the
    agent stops while it waits. ``state`` is the acknowledged checkpoint at startup. ``stop`` is set
    on shutdown: finish the current page and return.
    """

    emit: Callable[[Batch], Awaitable[None]]
    state: Mapping[str, StreamState]
    stop: asyncio.Event
    metrics: AgentMetrics
    clock: Clock
    #: Report each complete poll (``poll_succeeded``) and declare streams (``expect_stream``) for /readyz.
    health: Health | None = None


class Source(Protocol):
    """Polls one upstream and emits batches until ``ctx.stop`` is set."""

    name: str

    async def run(self, ctx: SourceContext) -> None:
        """Poll until stopped. Retriable failures are handled inside (backoff); returns on stop."""
        ...

    async def aclose(self) -> None:
        """Release HTTP sessions and threads."""
        ...


class SourceFactory(Protocol):
    """A source class: built from its config model."""

    def __call__(self, config: Any) -> Source: ...
