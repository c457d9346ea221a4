"""Pipeline core: ordered acknowledgement, bounded queue, runner retries and dead letters."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import orjson
import pytest
from prometheus_client import CollectorRegistry

from agent.errors import EncodeError
from agent.metrics import AgentMetrics
from agent.model import Alert, Batch, Commit
from agent.pipeline.acks import AckTracker
from agent.pipeline.config import BatchConfig, RetryConfig
from agent.pipeline.dead_letter import DeadLetterFile
from agent.pipeline.queue import BoundedQueue
from agent.pipeline.runner import SinkRunner
from agent.sinks.base import SendResult
from tests.support.sinks import RecordingSink, permanent, transient
from tests.support.wait import until

TS = "2026-11-27T10:00:00.0000000Z"


def batch(n: int, stream: str = "s", start: int = 0) -> Batch:
    alerts = [{"id": f"a{start + i}", "lastUpdateDateTime": TS} for i in range(n)]
    return Batch(stream, alerts, Commit(seen={a["id"]: TS for a in alerts}))


def metrics() -> AgentMetrics:
    return AgentMetrics(CollectorRegistry())


def value(m: AgentMetrics, name: str, **labels: str) -> float:
    got = m.registry.get_sample_value(name, labels)
    return 0.0 if got is None else got


class TestAckTracker:
    def test_commits_only_in_source_order(self) -> None:
        """A later batch acknowledged first waits for the earlier one."""
        committed: list[Commit] = []
        acks = AckTracker(lambda stream, c: committed.append(c))
        b1, b2 = batch(1), batch(1, start=1)
        acks.register(b1, 2)
        acks.register(b2, 2)
        acks.ack(b2)
        acks.ack(b2)
        assert committed == []
        acks.ack(b1)
        assert committed == []  # one sink still owes b1
        acks.ack(b1)
        assert committed == [b1.commit, b2.commit]
        assert acks.outstanding() == 0

    def test_streams_are_independent_and_empty_batches_commit_in_order(self) -> None:
        """A stuck stream does not hold another; an empty (cursor) batch waits behind its stream."""
        committed: list[str] = []
        acks = AckTracker(lambda stream, c: committed.append(stream))
        stuck, other = batch(1, "x"), batch(1, "y")
        acks.register(stuck, 1)
        acks.register(other, 1)
        cursor = Batch("x", [], Commit(cursor=TS))
        acks.register(cursor, 0)
        acks.ack(other)
        assert committed == ["y"]
        acks.ack(stuck)
        assert committed == ["y", "x", "x"]

    def test_cursor_only_commit_waits_behind_its_stream(self) -> None:
        """``advance`` (progress without alerts) commits once everything before it on its stream has."""
        committed: list[Commit] = []
        acks = AckTracker(lambda stream, c: committed.append(c))
        b = batch(1, "x")
        acks.register(b, 1)
        cursor = Commit(cursor=TS)
        acks.advance("x", cursor)
        acks.advance("y", Commit(cursor=TS))  # nothing before it on "y": committed at once
        assert len(committed) == 1 and acks.outstanding() == 2
        acks.ack(b)
        assert committed[1:] == [b.commit, cursor] and acks.outstanding() == 0

    def test_double_ack_is_a_bug(self) -> None:
        """Acknowledging more often than registered raises instead of corrupting order."""
        acks = AckTracker(lambda stream, c: None)
        b = batch(1)
        acks.register(b, 1)
        acks.ack(b)
        with pytest.raises(RuntimeError):
            acks.ack(b)


class TestBoundedQueue:
    async def test_block_waits_for_room_and_counts_blocked_time(self) -> None:
        """A full queue makes put wait until get frees room; the wait is measured."""
        m = metrics()
        q = BoundedQueue("k", 3, "block", m, wake_secs=0.05)
        assert await q.put(batch(2))
        put = asyncio.create_task(q.put(batch(2, start=2)))
        await asyncio.sleep(0)
        assert not put.done() and q.events == 2
        got = await q.get(timeout=1)
        assert got is not None and len(got.alerts) == 2
        assert await asyncio.wait_for(put, 1) is True
        assert q.events == 2
        assert value(m, "siem_agent_queue_blocked_seconds_total", sink="k") > 0
        assert value(m, "siem_agent_queue_events", sink="k") == 2

    async def test_drop_newest_counts_every_dropped_event(self) -> None:
        """drop_newest refuses what does not fit and counts it by reason."""
        m = metrics()
        q = BoundedQueue("k", 3, "drop_newest", m)
        assert await q.put(batch(3))
        assert not await q.put(batch(2, start=3))
        assert value(m, "siem_agent_dropped_total", component="queue:k", reason="queue_full") == 2

    async def test_oversized_batch_admitted_when_empty(self) -> None:
        """A batch larger than capacity cannot deadlock: it enters an empty queue."""
        q = BoundedQueue("k", 2, "block", metrics())
        assert await q.put(batch(5))

    async def test_abort_releases_a_blocked_put(self) -> None:
        """Shutdown (abort) wakes a producer blocked on a full queue without queuing its batch."""
        q = BoundedQueue("k", 1, "block", metrics(), wake_secs=0.01)
        await q.put(batch(1))
        abort = asyncio.Event()
        put = asyncio.create_task(q.put(batch(1, start=1), abort=abort))
        await asyncio.sleep(0)
        abort.set()
        assert await asyncio.wait_for(put, 1) is False
        assert q.events == 1


class RefusingSerializer:
    """JSON, except for alerts whose id starts with "bad" (stands in for any codec failure)."""

    def encode(self, alert: Alert) -> bytes:
        if str(alert["id"]).startswith("bad"):
            raise EncodeError("cannot encode this alert")
        return orjson.dumps(alert)


class Harness:
    def __init__(self, tmp_path: Path, sink: RecordingSink, **batch_kw: float) -> None:
        self.m = metrics()
        self.committed: list[Commit] = []
        self.acks = AckTracker(lambda stream, c: self.committed.append(c))
        self.queue = BoundedQueue(sink.name, 100, "block", self.m)
        self.dead = DeadLetterFile(tmp_path / "dead.jsonl", lambda: TS)
        self.sink = sink
        cfg = BatchConfig(
            max_events=int(batch_kw.get("max_events", 500)), timeout_secs=batch_kw.get("timeout", 0)
        )
        retry = RetryConfig(initial_backoff_secs=0.001, max_backoff_secs=0.002)
        self.runner = SinkRunner(
            sink, RefusingSerializer(), self.queue, self.acks, self.dead, cfg, retry, self.m
        )

    async def push(self, *batches: Batch) -> None:
        for b in batches:
            self.acks.register(b, 1)
            await self.queue.put(b)

    async def drain(self) -> None:
        await self.queue.close()
        await asyncio.wait_for(self.runner.run(), 5)

    def dead_letters(self) -> list[dict[str, object]]:
        path = self.dead.path
        return [orjson.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []


class TestSinkRunner:
    async def test_transient_failures_retry_until_delivered(self, tmp_path: Path) -> None:
        """Two transient failures, then success: delivered once, acked once, retries counted."""
        sink = RecordingSink()
        sink.script = [transient(), transient()]
        h = Harness(tmp_path, sink)
        b = batch(3)
        await h.push(b)
        await h.drain()
        assert [e.alert["id"] for e in sink.delivered] == ["a0", "a1", "a2"]
        assert h.committed == [b.commit]
        assert value(h.m, "siem_agent_send_retries_total", sink="rec") == 2
        assert value(h.m, "siem_agent_sink_up", sink="rec") == 1

    async def test_permanent_rejection_dead_letters_and_moves_on(self, tmp_path: Path) -> None:
        """A rejected batch lands in the dead-letter file with its reason, then is acknowledged."""
        sink = RecordingSink()
        sink.script = [permanent("400 bad event")]
        h = Harness(tmp_path, sink)
        b = batch(2)
        await h.push(b)
        await h.drain()
        dead = h.dead_letters()
        assert [d["alert"]["id"] for d in dead] == ["a0", "a1"]  # type: ignore[index]
        assert {d["reason"] for d in dead} == {"400 bad event"}
        assert {d["sink"] for d in dead} == {"rec"}
        assert h.committed == [b.commit]
        assert value(h.m, "siem_agent_dead_lettered_total", sink="rec", reason="rejected") == 2

    async def test_per_item_outcomes(self, tmp_path: Path) -> None:
        """One item rejected (dead-lettered), one retried (re-sent alone), the rest delivered."""
        sink = RecordingSink()
        sink.script = [SendResult(rejected={0: "mapping error"}, retry=[2])]
        h = Harness(tmp_path, sink)
        await h.push(batch(4))
        await h.drain()
        assert sorted(e.alert["id"] for e in sink.delivered) == ["a1", "a2", "a3"]
        assert sink.attempts == 2
        assert [d["alert"]["id"] for d in h.dead_letters()] == ["a0"]  # type: ignore[index]

    async def test_items_refused_one_by_one_are_one_dead_letter_write(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A bulk whose 50 items are each refused with their own reason: 50 dead letters with those
        reasons, written with one append and fsync (not 50 in a row while the lane waits)."""
        sink = RecordingSink()
        sink.script = [SendResult(rejected={i: f"mapping error {i}" for i in range(50)})]
        h = Harness(tmp_path, sink)
        appends: list[int] = []
        real = h.dead._append
        monkeypatch.setattr(h.dead, "_append", lambda data: (appends.append(data.count(b"\n")), real(data)))
        b = batch(50)
        await h.push(b)
        await h.drain()
        dead = h.dead_letters()
        assert [d["reason"] for d in dead] == [f"mapping error {i}" for i in range(50)]
        assert appends == [50]
        assert value(h.m, "siem_agent_dead_lettered_total", sink="rec", reason="rejected") == 50
        assert h.committed == [b.commit]

    async def test_chunks_respect_max_events_and_ack_after_all_chunks(self, tmp_path: Path) -> None:
        """A 5-alert batch with max_events=2 goes out as 3 sends and is acked once, after the last."""
        sink = RecordingSink()
        h = Harness(tmp_path, sink, max_events=2)
        b = batch(5)
        await h.push(b)
        await h.drain()
        assert sink.attempts == 3
        assert len(sink.delivered) == 5
        assert h.committed == [b.commit]

    async def test_unencodable_alert_is_dead_lettered_not_lost(self, tmp_path: Path) -> None:
        """An alert the codec cannot encode is dead-lettered; the others are delivered."""
        sink = RecordingSink()
        h = Harness(tmp_path, sink)
        good = {"id": "ok", "lastUpdateDateTime": TS}
        bad = {"id": "bad", "lastUpdateDateTime": TS}
        await h.push(Batch("s", [good, bad], Commit()))
        await h.drain()
        assert [e.alert["id"] for e in sink.delivered] == ["ok"]
        dead = h.dead_letters()
        assert [d["alert"]["id"] for d in dead] == ["bad"]  # type: ignore[index]
        assert dead[0]["reason"] == "encode: cannot encode this alert"
        assert value(h.m, "siem_agent_dead_lettered_total", sink="rec", reason="encode_error") == 1

    async def test_undelivered_batch_is_never_acked(self, tmp_path: Path) -> None:
        """While the sink holds a send, nothing is committed; cancelling leaves it uncommitted."""
        sink = RecordingSink()
        sink.gate.clear()
        h = Harness(tmp_path, sink)
        await h.push(batch(1))
        task = asyncio.create_task(h.runner.run())
        await asyncio.wait_for(sink.sending.wait(), 5)
        assert h.committed == []
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert h.committed == []
        assert h.acks.outstanding() == 1


class BrokenHealthSink(RecordingSink):
    """``healthcheck`` raises a plain ``RuntimeError`` (a sink bug) until ``broken`` is cleared."""

    def __init__(self) -> None:
        super().__init__()
        self.broken = True
        self.checks = 0

    async def healthcheck(self) -> str:
        self.checks += 1
        if self.broken:
            raise RuntimeError("sink bug")
        return "recording"


class TestIdleCheck:
    async def test_an_unexpected_healthcheck_error_marks_the_sink_down_and_the_lane_runs_on(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A ``RuntimeError`` from the idle health check reports the sink down (naming the type,
        logged once), does not end the lane; once the check passes the sink is up and batches flow."""
        sink = BrokenHealthSink()
        h = Harness(tmp_path, sink)
        health: list[tuple[bool, str | None]] = []
        h.runner._on_health = lambda up, reason: health.append((up, reason))
        h.runner._idle_secs = 0.01  # idle periods short enough to see several checks
        run = asyncio.create_task(h.runner.run())
        try:
            await until(lambda: sink.checks >= 3 or run.done(), 5, "three failed health checks")
            assert not run.done(), run.exception()
            assert health[-1] == (False, "health check: unexpected RuntimeError")
            assert value(h.m, "siem_agent_sink_up", sink="rec") == 0
            logged = [r for r in caplog.records if "unexpected error" in r.getMessage()]
            assert len(logged) == 1 and getattr(logged[0], "error_type", None) == "RuntimeError"
            sink.broken = False
            await until(lambda: health[-1] == (True, None) or run.done(), 5, "a passing health check")
            assert not run.done(), run.exception()
            b = batch(2)
            await h.push(b)
            await until(lambda: h.committed == [b.commit] or run.done(), 5, "the batch delivered")
            assert [e.alert["id"] for e in sink.delivered] == ["a0", "a1"]
            assert value(h.m, "siem_agent_sink_up", sink="rec") == 1
            await h.queue.close()
            await asyncio.wait_for(run, 5)
        finally:
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)


class TestDeadLetterFile:
    async def test_writes_what_orjson_refuses(self, tmp_path: Path) -> None:
        """An alert orjson cannot serialise (64-bit overflow) is still written, not lost."""
        dead = DeadLetterFile(tmp_path / "d.jsonl", lambda: TS)
        await dead.write("s", "why", [{"id": "x", "n": 2**70}])
        rec = json.loads(dead.path.read_bytes())
        assert rec["alert"] == {"id": "x", "n": 2**70} and rec["reason"] == "why"
