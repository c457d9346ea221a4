"""Per-source state (issue #17): the old single checkpoint split on first start, idle polls write
nothing, a source whose lock is held is not polled, and the write-back API's answer for another
shard's source."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
from pathlib import Path

import pytest

from agent.app import Agent
from agent.checkpoint import CheckpointStore
from agent.checkpoint.migrate import split_legacy
from agent.checkpoint.sources import source_store
from agent.config import load_settings
from agent.errors import StateError
from agent.model import Commit
from agent.shard import spread
from agent.simulator.server import GraphSimulator, server_ssl_context
from agent.simulator.tls import TlsFiles
from tests.support.agent_process import read_checkpoint
from tests.support.inprocess import file_sink, lines, run_until
from tests.support.simulator import SimEnv, agent_config
from tests.support.wait import until

NOW = "2026-11-27T10:00:00.0000000Z"
TS = "2026-11-27T09:59:59.1234567Z"


def legacy(state: Path, name: str = "test") -> CheckpointStore:
    """An old single checkpoint with two sources, part in the snapshot and part in the journal."""
    old = CheckpointStore(state, name, lambda: NOW)
    old.open()
    old.apply("a/alerts_v2/all", Commit(seen={"x": TS}, cursor=TS))
    old.apply("b/incidents/all", Commit(seen={"y": TS}, cursor=TS))
    old.rewrite()
    old.apply("b/alerts_v2/all", Commit(seen={"z": TS}, cursor=TS))  # journal only
    old.save()
    assert old.files.journal.exists()
    return old


class TestMigration:
    def test_split_keeps_every_cursor_and_key_and_the_old_files(self, tmp_path: Path) -> None:
        old = legacy(tmp_path)
        assert split_legacy(tmp_path, "test", lambda: NOW) == ["a", "b"]
        a = source_store(tmp_path, "a", "test", lambda: NOW).load()
        b = source_store(tmp_path, "b", "test", lambda: NOW).load()
        assert {k: (v.cursor, v.seen) for k, v in a.items()} == {"a/alerts_v2/all": (TS, {"x": TS})}
        assert {k: (v.cursor, v.seen) for k, v in b.items()} == {
            "b/incidents/all": (TS, {"y": TS}),
            "b/alerts_v2/all": (TS, {"z": TS}),
        }
        assert not old.exists()
        kept = sorted(p.name for p in tmp_path.glob("test.checkpoint.*.migrated-*"))
        assert [k.split(".migrated-")[0] for k in kept] == ["test.checkpoint.journal", "test.checkpoint.json"]
        assert split_legacy(tmp_path, "test", lambda: NOW) is None  # done once

    def test_interrupted_split_is_finished_without_overwriting(self, tmp_path: Path) -> None:
        """Cut off after writing ``a`` (old files still there): the next start writes ``b`` and leaves
        ``a`` as the first run wrote it."""
        legacy(tmp_path)
        a = source_store(tmp_path, "a", "test", lambda: NOW)
        a.open()
        a.apply("a/alerts_v2/all", Commit(seen={"x": TS}, cursor=TS))
        a.rewrite()
        before = a.files.snapshot.read_bytes()
        assert split_legacy(tmp_path, "test", lambda: NOW) == ["a", "b"]
        assert a.files.snapshot.read_bytes() == before
        assert "b/alerts_v2/all" in source_store(tmp_path, "b", "test", lambda: NOW).load()

    def test_a_corrupt_old_checkpoint_stops_before_anything_moves(self, tmp_path: Path) -> None:
        (tmp_path / "test.checkpoint.json").write_bytes(b'{"version": 1, "stre')
        with pytest.raises(StateError, match="corrupt"):
            split_legacy(tmp_path, "test", lambda: NOW)
        assert (tmp_path / "test.checkpoint.json").exists() and not (tmp_path / "sources").exists()

    async def test_first_start_continues_from_the_old_checkpoint(
        self, graph_sim: SimEnv, tmp_path: Path
    ) -> None:
        """An agent of the old layout delivered 20 alerts; this version starts on its file: only the 5
        new ones are forwarded."""
        state = tmp_path / "state"
        sent = graph_sim.sim.add_alerts(20)
        old = CheckpointStore(state, "test", lambda: NOW)
        old.open()
        newest = max(a["lastUpdateDateTime"] for a in sent)
        seen = {a["id"]: a["lastUpdateDateTime"] for a in sent}
        old.apply("sim/alerts_v2/all", Commit(seen=seen, cursor=newest))
        old.close()
        new = graph_sim.sim.add_alerts(5)
        out = tmp_path / "out.jsonl"
        settings = load_settings(data=agent_config(state, [graph_sim.source()], [file_sink(out)]))
        agent = Agent(settings)
        assert await run_until(agent, lambda: len(lines(out)) >= 5) == 0
        assert sorted(a["id"] for a in lines(out)) == sorted(a["id"] for a in new)
        assert not (state / "test.checkpoint.json").exists()
        assert list(state.glob("test.checkpoint.json.migrated-*"))


class TestIdleAndLocks:
    async def test_polls_that_find_nothing_write_nothing(self, graph_sim: SimEnv, tmp_path: Path) -> None:
        graph_sim.sim.add_alerts(3)
        out = tmp_path / "out.jsonl"
        settings = load_settings(
            data=agent_config(tmp_path / "state", [graph_sim.source()], [file_sink(out)])
        )
        agent = Agent(settings)
        journal = tmp_path / "state" / "sources" / "sim" / "checkpoint.journal"
        marks: dict[str, float] = {}

        def settled() -> bool:
            state = read_checkpoint(tmp_path / "state", "test").get("sim/alerts_v2/all", {})
            if len(lines(out)) < 3 or not state.get("cursor") or len(state["seen"]) < 3:
                return False  # the poll that found them, then its cursor commit
            marks.setdefault("polls", len(graph_sim.sim.graph_requests()))
            marks.setdefault("size", journal.stat().st_size)
            marks.setdefault("writes", agent.metrics.checkpoint_writes._value.get())
            return len(graph_sim.sim.graph_requests()) >= marks["polls"] + 10

        assert await run_until(agent, settled) == 0
        assert journal.stat().st_size == marks["size"], "an idle poll appended to the journal"
        assert agent.metrics.checkpoint_writes._value.get() == marks["writes"]

    async def test_a_source_whose_lock_is_held_elsewhere_waits_unpolled(
        self, graph_sim: SimEnv, tmp_path: Path
    ) -> None:
        """Another process holds the source's lock: the agent does not poll it, says so in /readyz
        terms, and polls it once the lock is free."""
        state = tmp_path / "state"
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLD, str(state / "sources" / "sim" / "lock")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        try:
            assert holder.stdout is not None and holder.stdout.readline() == b"locked\n"
            graph_sim.sim.add_alerts(2)
            out = tmp_path / "out.jsonl"
            data = agent_config(state, [graph_sim.source()], [file_sink(out)])
            data["shard"] = {"lock_retry_secs": 0.05}
            agent = Agent(load_settings(data=data))
            task = asyncio.create_task(agent.run())
            try:
                await until(lambda: bool(agent.health.report()[1]), 10, "the waiting line")
                ready, report = agent.health.report()
                assert ready and report[0].startswith(
                    "stream sim/alerts_v2/all: waiting (its source's lock is held by"
                )
                assert f"pid {holder.pid}" in report[0]
                assert graph_sim.sim.requests == [], "polled a source another process holds"
                holder.stdin.close()  # type: ignore[union-attr]
                holder.wait(10)
                await until(lambda: len(lines(out)) == 2, 10, "polling once the lock is free")
            finally:
                agent.request_stop()
                assert await asyncio.wait_for(task, 10) == 0
        finally:
            holder.kill()
            holder.wait(10)
            for pipe in (holder.stdin, holder.stdout):
                if pipe is not None and not pipe.closed:
                    pipe.close()


HOLD = """
import sys
from pathlib import Path
from agent.sourcelock import FileLock
assert FileLock(Path(sys.argv[1])).try_acquire()
print("locked", flush=True)
sys.stdin.read()
"""


class TestSchedule:
    async def test_first_polls_are_spread_and_keep_their_phase(
        self, tmp_path: Path, tls_files: TlsFiles
    ) -> None:
        """Three tenants with a 1 s interval: first polls about 1/3 s apart (hash order), then each
        tenant's polls stay on its own grid, 1 s apart, however long a poll took."""
        sim = GraphSimulator(any_tenant=True)
        base = await sim.start(server_ssl_context(str(tls_files.cert), str(tls_files.key)))
        try:
            env = SimEnv(sim, base, tls_files)
            names = ["a", "b", "c"]
            sources = [env.source(name=n, tenant_id=f"tenant-{n}", poll_interval_secs=1.0) for n in names]
            data = agent_config(tmp_path / "state", sources, [file_sink(tmp_path / "out.jsonl")])
            agent = Agent(load_settings(data=data))
            polls = lambda: [r for r in sim.graph_requests() if r.tenant]  # noqa: E731
            assert await run_until(agent, lambda: len(polls()) >= 12, timeout=20) == 0
        finally:
            await sim.stop()
        times: dict[str, list[float]] = {}
        for r in polls():
            times.setdefault(r.tenant.removeprefix("tenant-"), []).append(r.at)
        fractions = spread(names)
        first = {n: t[0] for n, t in times.items()}
        origin = min(first.values()) - min(fractions.values())
        for name in names:
            assert abs(first[name] - origin - fractions[name]) < 0.25, (name, first, fractions)
            gaps = [b - a for a, b in itertools.pairwise(times[name])]
            assert gaps and all(abs(g - round(g)) < 0.25 and round(g) >= 1 for g in gaps), (name, gaps)
