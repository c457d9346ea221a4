"""The commit path: acknowledged progress, in source order, into the checkpoint store.

The ack tracker hands every stream's ``Commit`` over only once every sink delivered everything
before it (``agent.pipeline.acks``). ``CommitPath.commit`` applies it to a ``ProgressStore`` at once,
in memory; ``run`` writes the store out at most every ``interval_secs`` (acknowledged progress is
coalesced) and ``flush`` writes what is left on shutdown. The store is a seam: today the one
checkpoint document (``agent.checkpoint.CheckpointStore``), an in-memory stand-in for ``backfill``;
an append-only journal or one store per source can take its place.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Protocol

from agent.checkpoint import StreamState
from agent.clock import Clock
from agent.errors import StateError
from agent.metrics import AgentMetrics
from agent.model import Commit
from agent.timestamps import parse


class ProgressStore(Protocol):
    """Where acknowledged progress is kept."""

    @property
    def streams(self) -> Mapping[str, StreamState]:
        """Every stream's acknowledged state (cursor, dedup keys), as applied so far."""
        ...

    @property
    def dirty(self) -> bool:
        """Whether something was applied since the last ``save``."""
        ...

    def apply(self, stream: str, commit: Commit) -> None:
        """Record acknowledged progress of ``stream`` in memory; never blocks."""
        ...

    def save(self) -> None:
        """Persist what was applied. Raises ``StateError``; what was saved before stays intact."""
        ...


class CommitPath:
    """Applies acknowledged commits to a store and writes it out, coalesced."""

    def __init__(
        self, store: ProgressStore, metrics: AgentMetrics, clock: Clock, interval_secs: float
    ) -> None:
        self.store = store
        self._metrics = metrics
        self._clock = clock
        self._interval = interval_secs
        self._dirty = asyncio.Event()
        metrics.add_refresher(self.refresh_lag)

    def commit(self, stream: str, commit: Commit) -> None:
        """Acknowledged progress of ``stream`` (the ack tracker's ``on_commit``): apply it now, write soon."""
        self.store.apply(stream, commit)
        self._set_lag(stream)
        self._dirty.set()

    def refresh_lag(self) -> None:
        """Checkpoint lag of every stream as of now (it grows while nothing is committed)."""
        for stream in list(self.store.streams):
            self._set_lag(stream)

    def _set_lag(self, stream: str) -> None:
        cursor = self.store.streams[stream].cursor
        if cursor is not None:
            lag = (self._clock.now() - parse(cursor)).total_seconds()
            self._metrics.checkpoint_lag.labels(stream).set(lag)

    async def run(self) -> None:
        """Write the store whenever something was committed, at most every ``interval_secs``.

        Runs until cancelled; raises ``StateError`` when a write fails (the agent stops, exit 74).
        """
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            self.flush()
            if self._interval:
                await asyncio.sleep(self._interval)

    def flush(self) -> None:
        """Write the store now if anything is unwritten. Raises ``StateError`` (counted)."""
        if not self.store.dirty:
            return
        try:
            self.store.save()
        except StateError:
            self._metrics.checkpoint_errors.inc()
            raise
        self._metrics.checkpoint_writes.inc()
