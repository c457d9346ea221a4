"""The commit path: acknowledged progress, in source order, into the checkpoint store.

The ack tracker hands every stream's ``Commit`` over only once every sink delivered everything
before it (``agent.pipeline.acks``). ``CommitPath.commit`` applies it to a ``ProgressStore`` at once,
in memory; ``run`` writes what was applied in a worker thread (the checkpoint journal: an append
and an fsync per write, ``agent.checkpoint``), coalescing whatever was committed meanwhile, and
``flush`` writes what is left on shutdown.

``durable`` is the per-batch barrier: a sink runner awaits it after acknowledging a batch and before
sending the next one, so a crash can re-send at most the batch that was being sent. With
``interval_secs`` > 0 the writer waits that long between writes and ``durable`` does not wait
(fewer fsyncs, more duplicates after a crash: up to ``interval_secs`` of throughput).
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
        """Persist what was applied; called from a worker thread, one call at a time, while ``apply``
        may run on the event loop. Raises ``StateError``; what was saved before stays intact."""
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
        #: Commits applied so far, and how many of them a completed write covers.
        self._applied = 0
        self._written = 0
        self._wrote = asyncio.Event()
        #: The writer's failure, if it stopped on one: ``durable`` raises it instead of waiting.
        self._failed: StateError | None = None
        metrics.add_refresher(self.refresh_lag)

    def commit(self, stream: str, commit: Commit) -> None:
        """Acknowledged progress of ``stream`` (the ack tracker's ``on_commit``): apply it now, write soon."""
        self.store.apply(stream, commit)
        self._applied += 1
        self._set_lag(stream)
        self._dirty.set()

    async def durable(self) -> None:
        """Return once every commit applied before this call is written (at once with an interval).

        Cancellation only stops the wait; the write goes on. Raises ``StateError`` once the writer
        stopped on a failed write (nothing will write it now; the agent is stopping, exit 74).
        """
        if self._interval:
            return
        target = self._applied
        while self._written < target:
            if self._failed is not None:
                raise StateError(f"checkpoint not written: {self._failed}")
            await self._wrote.wait()

    def _mark_written(self, upto: int) -> None:
        self._written = max(self._written, upto)
        self._wake()

    def _wake(self) -> None:
        wrote, self._wrote = self._wrote, asyncio.Event()
        wrote.set()

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
        """Write the store (in a worker thread) whenever something was committed, at most every
        ``interval_secs``.

        Runs until cancelled; raises ``StateError`` when a write fails (the agent stops, exit 74).
        """
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            upto = self._applied
            try:
                await asyncio.to_thread(self._save)
            except StateError as exc:
                self._failed = exc
                self._wake()  # the durable() waiters raise it rather than wait for the deadline
                raise
            self._mark_written(upto)
            if self._interval:
                await asyncio.sleep(self._interval)

    def flush(self) -> None:
        """Write the store now if anything is unwritten. Raises ``StateError`` (counted)."""
        upto = self._applied
        self._save()
        self._mark_written(upto)

    def _save(self) -> None:
        if not self.store.dirty:
            return
        try:
            self.store.save()
        except StateError:
            self._metrics.checkpoint_errors.inc()
            raise
        self._metrics.checkpoint_writes.inc()
