"""The pipeline: every batch to every sink's lane, acknowledgements back into the commit path.

A lane is one sink with its bounded queue and its runner (encode, send, retry, dead-letter). ``emit``
registers a batch with the ack tracker for every lane and puts it in each lane's queue (blocking
while one is full: backpressure); ``advance`` is the cursor-only commit. Whatever order the lanes
finish in, the ack tracker hands each stream's commits to the commit path in source order.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping
from dataclasses import dataclass

from agent.checkpoint import StreamState
from agent.codecs import build_serializer
from agent.health import Health
from agent.metrics import AgentMetrics
from agent.model import Alert, Batch, Commit
from agent.pipeline.acks import AckTracker
from agent.pipeline.commit import CommitPath
from agent.pipeline.config import LaneConfig
from agent.pipeline.dead_letter import DeadLetterFile
from agent.pipeline.queue import BoundedQueue, QueueClosed
from agent.pipeline.runner import IDLE_CHECK_SECS, SinkRunner
from agent.pipeline.sink import Reopenable, Sink
from agent.sources.base import SourceContext, Stopping


@dataclass(frozen=True, slots=True)
class Lane:
    """One sink and what feeds it."""

    sink: Sink
    queue: BoundedQueue
    runner: SinkRunner


class Pipeline:
    """Fan-out to the lanes, ordered acknowledgement, and the commit path behind them."""

    def __init__(
        self,
        commits: CommitPath,
        dead_letter: DeadLetterFile,
        metrics: AgentMetrics,
        stop: asyncio.Event,
        health: Health | None = None,
    ) -> None:
        self.commits = commits
        self.acks = AckTracker(commits.commit)
        self.lanes: list[Lane] = []
        self._dead = dead_letter
        self._metrics = metrics
        self._stop = stop
        self._health = health

    def add_lane(self, config: LaneConfig, sink: Sink) -> Lane:
        """Put ``sink`` behind a queue and runner configured by its table; every later batch goes to it."""
        name = config.name
        counter = self._metrics.truncated

        def on_truncate(field_name: str) -> None:
            counter.labels(name, field_name).inc()

        queue = BoundedQueue(name, config.queue.max_events, config.queue.when_full, self._metrics)
        on_health = None
        if self._health is not None:
            self._health.sink_state(name, False)
            on_health = functools.partial(self._health.sink_state, name)
        runner = SinkRunner(
            sink,
            build_serializer(config.codec, on_truncate),
            queue,
            self.acks,
            self._dead,
            config.batch,
            config.retry,
            self._metrics,
            on_health=on_health,
            durable=self.commits.durable,
            idle_check_secs=IDLE_CHECK_SECS,
        )
        lane = Lane(sink, queue, runner)
        self.lanes.append(lane)
        return lane

    def context(self, state: Mapping[str, StreamState]) -> SourceContext:
        """What a running source gets: ``emit``, ``advance``, its acknowledged ``state``, ``stop``."""
        return SourceContext(self.emit, self.advance, state, self._stop, self._health, self.reject)

    async def emit(self, batch: Batch) -> None:
        """Queue ``batch`` for every lane (waiting for room); raises ``Stopping`` when the agent stops."""
        self.acks.register(batch, len(self.lanes))
        for lane in self.lanes:
            try:
                queued = await lane.queue.put(batch, abort=self._stop)
            except QueueClosed:
                raise Stopping from None
            if not queued:
                if self._stop.is_set():
                    raise Stopping
                self.acks.ack(batch)  # dropped by policy (drop_newest), counted by the queue

    async def advance(self, stream: str, commit: Commit) -> None:
        """The cursor-only commit: ``commit`` goes to the commit path behind what ``stream`` emitted."""
        self.acks.advance(stream, commit)

    async def reject(self, stream: str, item: Alert, reason: str) -> None:
        """Dead-letter one item a source will not forward (written before this returns)."""
        await self._dead.write(stream, reason, [item], role="source")

    async def close(self) -> None:
        """Take no more batches; the runners deliver what is queued, then return."""
        for lane in self.lanes:
            await lane.queue.close()

    def reopen(self) -> None:
        """SIGHUP: the sinks that write to files reopen them."""
        for lane in self.lanes:
            if isinstance(lane.sink, Reopenable):
                lane.sink.reopen()
