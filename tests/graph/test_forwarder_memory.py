"""The dedup memory's cost: an idle poll or a duplicate does not re-parse every remembered time."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

import agent.checkpoint.state as state_mod
import agent.sources.graph.forwarder as forwarder_mod
from agent.checkpoint.state import StreamState, apply_commit
from agent.clock import SystemClock
from agent.metrics import AgentMetrics
from agent.model import Commit
from agent.sources.base import SourceContext
from agent.sources.graph.forwarder import StreamForwarder
from agent.timestamps import from_ticks, sort_key, to_ticks

BASE = to_ticks("2026-11-27T00:00:00.0000000Z")
N = 5_000


def times(n: int = N) -> dict[str, str]:
    return {f"id{i}": from_ticks(BASE + i * 10_000_000) for i in range(n)}


def counting(monkeypatch: pytest.MonkeyPatch, module: object) -> list[str]:
    calls: list[str] = []

    def counted(ts: str) -> str:
        calls.append(ts)
        return sort_key(ts)

    monkeypatch.setattr(module, "sort_key", counted)
    return calls


def forwarder(seen: dict[str, str]) -> StreamForwarder:
    ctx: SourceContext = None  # type: ignore[assignment]  # prune and is_new never touch it
    return StreamForwarder(
        "s", "lastUpdateDateTime", True, ctx, AgentMetrics(CollectorRegistry()), SystemClock(), seen
    )


def test_idle_prune_does_not_rescan_the_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    fw = forwarder(times())
    horizon = from_ticks(BASE + 10 * 10_000_000)
    assert fw.prune(horizon, N) == (horizon, 0)  # the first prune learns the oldest time
    assert len(fw.emitted) == N - 10
    calls = counting(monkeypatch, forwarder_mod)
    for _ in range(3):  # idle polls: same horizon, nothing to forget
        assert fw.prune(horizon, N) == (horizon, 0)
    assert len(calls) <= 3, len(calls)
    assert len(fw.emitted) == N - 10


def test_prune_still_forgets_an_older_time_remembered_after_a_scan() -> None:
    fw = forwarder(times())
    horizon = from_ticks(BASE + 10 * 10_000_000)
    fw.prune(horizon, N)
    old = from_ticks(BASE)
    fw._remember("late", old, sort_key(old))  # e.g. a rejected item's or an old version's time
    assert fw.prune(horizon, N) == (horizon, 0)
    assert "late" not in fw.emitted
    # and the cap still evicts when the horizon forgets nothing
    fw.prune(horizon, N - 20)
    assert len(fw.emitted) == N - 20


def test_a_duplicate_is_not_parsed_again(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = times(10)
    fw = forwarder(seen)
    calls = counting(monkeypatch, forwarder_mod)
    for item_id, ts in seen.items():
        assert not fw.is_new(item_id, sort_key(ts), ts)
    assert calls == []
    later = from_ticks(BASE + 1)
    assert fw.is_new("id0", sort_key(later), later)
    same_instant = "2026-11-27T00:00:00Z"  # another spelling of id0's time: not a later version
    assert not fw.is_new("id0", sort_key(same_instant), same_instant)


def test_checkpoint_commit_that_prunes_nothing_does_not_rescan(monkeypatch: pytest.MonkeyPatch) -> None:
    streams = {"s": StreamState("2026-11-27T00:00:00.0000000Z", times())}
    horizon = from_ticks(BASE + 10 * 10_000_000)
    apply_commit(streams, "s", Commit(cursor=from_ticks(BASE + N * 10_000_000), prune_before=horizon))
    assert len(streams["s"].seen) == N - 10
    calls = counting(monkeypatch, state_mod)
    fresh = from_ticks(BASE + (N + 1) * 10_000_000)
    apply_commit(streams, "s", Commit(seen={"new": fresh}, cursor=fresh, prune_before=horizon))
    assert len(calls) <= 5, len(calls)
    assert len(streams["s"].seen) == N - 9
    old = from_ticks(BASE)
    apply_commit(streams, "s", Commit(seen={"old": old}, cursor=fresh, prune_before=horizon))
    assert "old" not in streams["s"].seen
