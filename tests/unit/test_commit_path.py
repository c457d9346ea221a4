"""The pipeline's commit path and fan-out: acknowledged progress reaches the store in order, once."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from agent.checkpoint import StreamState
from agent.clock import SystemClock
from agent.errors import StateError
from agent.metrics import AgentMetrics
from agent.model import Batch, Commit
from agent.pipeline import CommitPath, Pipeline
from agent.pipeline.config import LaneConfig
from agent.pipeline.dead_letter import DeadLetterFile
from agent.sources import Stopping
from tests.support.sinks import RecordingSink
from tests.support.wait import until

TS = "2026-11-27T10:00:00.0000000Z"


class MemoryStore:
    """A ``ProgressStore`` that records what it is asked to do."""

    def __init__(self) -> None:
        self._streams: dict[str, StreamState] = {}
        self.dirty = False
        self.saves = 0
        self.fail = False

    @property
    def streams(self) -> Mapping[str, StreamState]:
        return self._streams

    def apply(self, stream: str, commit: Commit) -> None:
        state = self._streams.setdefault(stream, StreamState())
        state.seen.update(commit.seen)
        state.cursor = commit.cursor or state.cursor
        self.dirty = True

    def save(self) -> None:
        if self.fail:
            raise StateError("disk full")
        self.saves += 1
        self.dirty = False


def value(m: AgentMetrics, name: str, **labels: str) -> float:
    return m.registry.get_sample_value(name, labels) or 0.0


class TestCommitPath:
    def test_commit_applies_at_once_and_flush_writes_once(self) -> None:
        """A commit is in the store at once; ``flush`` writes only when something is unwritten."""
        store, m = MemoryStore(), AgentMetrics(CollectorRegistry())
        path = CommitPath(store, m, SystemClock(), 0)
        path.commit("s", Commit(cursor=TS))
        assert store.streams["s"].cursor == TS and store.saves == 0
        path.flush()
        path.flush()
        assert store.saves == 1 and value(m, "siem_agent_checkpoint_writes_total") == 1
        assert value(m, "siem_agent_checkpoint_lag_seconds", stream="s") > 0

    def test_failed_write_is_counted_and_raised(self) -> None:
        """A store that cannot write raises ``StateError`` (exit 74) and the failure is counted."""
        store, m = MemoryStore(), AgentMetrics(CollectorRegistry())
        path = CommitPath(store, m, SystemClock(), 0)
        path.commit("s", Commit(cursor=TS))
        store.fail = True
        with pytest.raises(StateError):
            path.flush()
        assert value(m, "siem_agent_checkpoint_write_errors_total") == 1

    async def test_writer_coalesces_commits(self) -> None:
        """Commits made before the writer gets to run go to the store in one write."""
        store, m = MemoryStore(), AgentMetrics(CollectorRegistry())
        path = CommitPath(store, m, SystemClock(), 3600)
        path.commit("s", Commit(seen={"a": TS}))
        path.commit("s", Commit(seen={"b": TS}))
        path.commit("s", Commit(cursor=TS))
        writer = asyncio.create_task(path.run())
        try:
            await until(lambda: store.saves == 1, what="one write")
        finally:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
        assert store.saves == 1 and not store.dirty and set(store.streams["s"].seen) == {"a", "b"}

    async def test_a_failed_write_wakes_the_durable_waiters(self) -> None:
        """The writer's ``StateError`` (disk full) ends every ``durable()`` wait with that error at
        once, instead of leaving the sink runners waiting until the shutdown deadline."""
        store, m = MemoryStore(), AgentMetrics(CollectorRegistry())
        path = CommitPath(store, m, SystemClock(), 0)
        path.commit("s", Commit(cursor=TS))
        store.fail = True
        waiter = asyncio.create_task(path.durable())
        writer = asyncio.create_task(path.run())
        try:
            with pytest.raises(StateError, match="disk full"):
                await asyncio.wait_for(writer, 5)
            with pytest.raises(StateError, match="disk full"):
                await asyncio.wait_for(waiter, 5)
            path.commit("s", Commit(cursor=TS))
            with pytest.raises(StateError, match="disk full"):  # a later batch's barrier too
                await asyncio.wait_for(path.durable(), 5)
        finally:
            for task in (waiter, writer):
                task.cancel()
            await asyncio.gather(waiter, writer, return_exceptions=True)


class TestPipeline:
    def _pipeline(self, tmp_path: Path, stop: asyncio.Event) -> tuple[Pipeline, MemoryStore]:
        store, m = MemoryStore(), AgentMetrics(CollectorRegistry())
        dead = DeadLetterFile(tmp_path / "dead.jsonl", lambda: TS)
        return Pipeline(CommitPath(store, m, SystemClock(), 0), dead, m, stop), store

    async def test_emit_reaches_every_lane_and_commits_after_both_acks(self, tmp_path: Path) -> None:
        """Fan-out: each lane's queue gets the batch; its commit waits for both lanes' acks."""
        pipeline, store = self._pipeline(tmp_path, asyncio.Event())
        for name in ("a", "b"):
            pipeline.add_lane(LaneConfig(name=name), RecordingSink(name))
        batch = Batch("s", [{"id": "x", "lastUpdateDateTime": TS}], Commit(seen={"x": TS}))
        ctx = pipeline.context({})
        await ctx.emit(batch)
        await ctx.advance("s", Commit(cursor=TS))
        assert [lane.queue.events for lane in pipeline.lanes] == [1, 1] and store.streams == {}
        pipeline.acks.ack(batch)
        assert store.streams == {}
        pipeline.acks.ack(batch)
        assert store.streams["s"].seen == {"x": TS} and store.streams["s"].cursor == TS

    async def test_emit_after_close_is_stopping(self, tmp_path: Path) -> None:
        """Once the lanes are closed (shutdown), ``emit`` raises ``Stopping``: the source returns."""
        pipeline, _ = self._pipeline(tmp_path, asyncio.Event())
        pipeline.add_lane(LaneConfig(name="a"), RecordingSink("a"))
        await pipeline.close()
        with pytest.raises(Stopping):
            await pipeline.emit(Batch("s", [{"id": "x"}], Commit()))


class TestDurableBarrier:
    async def test_a_sink_sends_its_next_batch_only_once_the_last_commit_is_written(
        self, tmp_path: Path
    ) -> None:
        """With ``checkpoint_interval_secs = 0`` the runner waits for its batch's commit to reach the
        store before sending the next batch: a crash can only re-send the batch being sent."""
        import threading

        class SlowStore(MemoryStore):
            def __init__(self) -> None:
                super().__init__()
                self.release = threading.Event()
                self.saving = threading.Event()

            def save(self) -> None:
                self.saving.set()
                assert self.release.wait(10)
                super().save()

        store, m = SlowStore(), AgentMetrics(CollectorRegistry())
        commits = CommitPath(store, m, SystemClock(), 0)
        dead = DeadLetterFile(tmp_path / "dead.jsonl", lambda: TS)
        pipeline = Pipeline(commits, dead, m, asyncio.Event())
        sink = RecordingSink("a")
        pipeline.add_lane(LaneConfig(name="a", batch={"max_events": 1, "timeout_secs": 0}), sink)
        writer = asyncio.create_task(commits.run())
        runner = asyncio.create_task(pipeline.lanes[0].runner.run())
        try:
            for i in range(2):
                alert = {"id": f"x{i}", "lastUpdateDateTime": TS}
                await pipeline.emit(Batch("s", [alert], Commit(seen={f"x{i}": TS})))
            await until(store.saving.is_set, what="the first commit being written")
            assert sink.attempts == 1, "the second batch went out before the first was durable"
            store.release.set()
            await until(lambda: sink.attempts == 2 and store.saves == 2, what="the second batch")
        finally:
            store.release.set()
            await pipeline.close()
            await asyncio.wait_for(runner, 10)
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
        assert set(store.streams["s"].seen) == {"x0", "x1"}

    async def test_with_an_interval_nothing_waits(self) -> None:
        """``checkpoint_interval_secs > 0``: ``durable`` returns at once (coalesced writes)."""
        commits = CommitPath(MemoryStore(), AgentMetrics(CollectorRegistry()), SystemClock(), 5)
        commits.commit("s", Commit(cursor=TS))
        await asyncio.wait_for(commits.durable(), 1)
