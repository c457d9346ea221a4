"""The source seam.

A source reads alerts and hands them to the pipeline as ``Batch``es through ``SourceContext.emit``,
which blocks while a sink queue is full (backpressure). A source never writes the checkpoint: each
batch carries the ``Commit`` its delivery earns, and progress that carries no alerts (a cursor moved
past a fully read window) goes through ``SourceContext.advance``, the cursor-only commit. The ack
tracker applies both in the order they were handed over.
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
from agent.model import Alert, Batch, Commit


class Stopping(Exception):
    """Raised by ``emit`` when the agent is shutting down; the batch was not queued."""


@dataclass(frozen=True, slots=True)
class SourceContext:
    """What the pipeline gives a running source.

    ``emit`` queues a batch of alerts for every sink; it returns once queued and raises ``Stopping``
    when the agent stops while it waits. ``advance`` is the cursor-only commit: ``commit`` is applied
    to ``stream`` once everything emitted on that stream before it was acknowledged (it never waits
    for queue room). ``state`` is the acknowledged checkpoint at startup. ``stop`` is set on shutdown:
    finish the current page and return. ``reject`` dead-letters one item the source will not forward
    (``reject(stream, item, reason)``: written durably before it returns; raises ``StateError`` when
    the dead-letter file cannot be written).
    """

    emit: Callable[[Batch], Awaitable[None]]
    advance: Callable[[str, Commit], Awaitable[None]]
    state: Mapping[str, StreamState]
    stop: asyncio.Event
    #: Report each complete poll (``poll_succeeded``) and declare streams (``expect_stream``) for /readyz.
    health: Health | None = None
    reject: Callable[[str, Alert, str], Awaitable[None]] | None = None


class Source(Protocol):
    """Reads one upstream: polls it until stopped, or reads one time window once."""

    name: str

    async def run(self, ctx: SourceContext) -> None:
        """Poll until stopped. Retriable failures are handled inside (backoff); returns on stop."""
        ...

    async def read_window(self, ctx: SourceContext, start: str, end: str) -> None:
        """Read every alert with a time in ``[start, end)`` once, emitting it to ``ctx``; then return.

        For replays (``backfill``): no overlap and no dedup against the checkpoint state. Returns early
        when ``ctx.stop`` is set; raises ``SourceError`` when the window cannot be read.
        """
        ...

    async def healthcheck(self) -> str:
        """Prove the upstream answers with these credentials (one small read); return what was checked.

        Bounded in time. Raises ``SourceError`` naming what is wrong (never a secret).
        """
        ...

    async def aclose(self) -> None:
        """Release HTTP sessions and threads."""
        ...


class SourceFactory(Protocol):
    """A source class: built from its config model, the clock, the agent's metrics and what the
    process's sources of its kind share (``None``: nothing)."""

    def __call__(self, config: Any, clock: Clock, metrics: AgentMetrics, shared: Any = None) -> Source: ...
