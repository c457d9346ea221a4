"""Claim: replicas with ``[shard] count = N`` over one state directory poll every tenant exactly once,
a re-shard to N + 1 (rolling, as a StatefulSet does it) loses and duplicates nothing and never has two
replicas polling one tenant, and a killed replica's tenants stay unpolled until it returns (issue #17).

Real agent processes (``python -m agent.cli run``) against one Graph simulator in ``any_tenant`` mode
with 40 tenants, one source per tenant, over one shared ``state_dir``. Each process instance uses its
own ``client_id`` (``<phase>-<index>``) so the simulator's request log says which process polled
which tenant, and its own file sink; "at the sink" is the union of those files.

1. ``count = 4``, indexes 0..3: every alert arrives once; each tenant is polled by exactly one
   process, the one ``agent.shard.owner`` names.
2. Rolling re-shard to 5: index 4 starts while the old four run (it waits for the locks of the sources
   it wins), then old 3, 2, 1, 0 are replaced one at a time by new ones (``count = 5``); new alerts
   meanwhile. Every alert arrives exactly once; per tenant, the processes that polled it never
   alternate (old owner until it stops, then the new owner); the moved tenants resumed from their
   checkpoints (their old alerts were not forwarded again).
3. SIGKILL one replica, add alerts: the others deliver theirs, its tenants get no request until it is
   restarted; then everything has arrived (nothing lost; a kill may repeat at most a batch).

About 40 s on 2 cores.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.shard import owner
from agent.simulator.server import GraphSimulator, backdate, server_ssl_context
from agent.simulator.tls import TlsFiles
from tests.support.agent_process import AgentProcess, agent_settings, fast_source, read_jsonl, write_config
from tests.support.simulator import SimEnv
from tests.support.wait import until

TENANTS = [f"tenant-{i:02d}" for i in range(40)]
SOURCES = {f"s{i:02d}": t for i, t in enumerate(TENANTS)}
PER_ROUND = 3  # alerts per tenant per round


@pytest.fixture
async def multi_sim(tls_files: TlsFiles) -> AsyncIterator[SimEnv]:
    sim = GraphSimulator(any_tenant=True)
    base = await sim.start(server_ssl_context(str(tls_files.cert), str(tls_files.key)))
    try:
        yield SimEnv(sim, base, tls_files)
    finally:
        await sim.stop()


class Fleet:
    """The agent processes of one test, each instance with its own client id, config and sink file."""

    def __init__(self, tmp: Path, env: SimEnv) -> None:
        self.tmp = tmp
        self.env = env
        self.state = tmp / "state"
        self.running: dict[int, AgentProcess] = {}
        self.outputs: list[Path] = []

    def start(self, client: str, index: int, count: int) -> AgentProcess:
        out = self.tmp / f"out-{client}.jsonl"
        self.outputs.append(out)
        sources = [
            fast_source(
                self.env.source(name=name, tenant_id=tenant, client_id=client),
                poll_interval_secs=0.5,
                page_size=50,
            )
            for name, tenant in SOURCES.items()
        ]
        sink = {"type": "file", "name": "f", "path": str(out), "codec": {"type": "json"}}
        sink["batch"] = {"max_events": 50, "timeout_secs": 0.05}
        settings = agent_settings(
            self.state, sources, [sink], shard={"count": count, "index": index, "lock_retry_secs": 0.2}
        )
        proc = AgentProcess(write_config(self.tmp / f"{client}.toml", settings), self.tmp / f"{client}.log")
        proc.start()
        self.running[index] = proc
        return proc

    async def started(self, proc: AgentProcess) -> None:
        """Wait for the process's "Agent started." (every owned source scheduled or waiting for its lock)."""
        await until(lambda: bool(proc.messages("Agent started.", this_run=True)) or not proc.alive(), 30)
        assert proc.alive(), proc.log_text()[-2000:]

    def delivered(self) -> Counter[tuple[str, str]]:
        """Alert versions at the sink (all instances' files together), with how often each arrived."""
        return Counter((r["id"], r["lastUpdateDateTime"]) for p in self.outputs for r in read_jsonl(p))

    async def stop(self, index: int) -> None:
        code = await self.running.pop(index).stop()
        assert code == 0, f"replica {index} exited {code}"

    def kill_all(self) -> None:
        for proc in self.running.values():
            proc.kill()


def add_round(sim: GraphSimulator) -> set[tuple[str, str]]:
    made = [a for t in TENANTS for a in sim.add_alerts(PER_ROUND, when=backdate(30), tenant=t)]
    return {(a["id"], a["lastUpdateDateTime"]) for a in made}


def pollers(sim: GraphSimulator, since: float = 0.0) -> dict[str, list[str]]:
    """Tenant -> the client ids of its Graph list requests since ``since``, in arrival order."""
    out: dict[str, list[str]] = {t: [] for t in TENANTS}
    for r in sim.graph_requests():
        if r.at >= since and r.tenant:
            out[r.tenant].append(r.client_id)
    return out


async def test_shards_poll_each_tenant_once_and_reshard_without_loss(
    tmp_path: Path, multi_sim: SimEnv
) -> None:
    sim = multi_sim.sim
    fleet = Fleet(tmp_path, multi_sim)
    expected = add_round(sim)
    try:
        # 1. Four replicas.
        for i in range(4):
            fleet.start(f"a{i}", i, 4)
        await until(lambda: set(fleet.delivered()) >= expected, 60, "every alert at count 4")
        await until(lambda: all(pollers(sim).values()), 20, "every tenant polled")
        for tenant, clients in pollers(sim).items():
            name = next(n for n, t in SOURCES.items() if t == tenant)
            assert set(clients) == {f"a{owner(name, 4)}"}, (tenant, set(clients))

        # 2. Rolling re-shard to five: the new index first, then old 3..0 replaced one by one.
        before = {next(n for n, t in SOURCES.items() if t == tn): set(c) for tn, c in pollers(sim).items()}
        newcomer = fleet.start("b4", 4, 5)
        await fleet.started(newcomer)
        expected |= add_round(sim)
        for i in (3, 2, 1, 0):  # a StatefulSet's order; each new pod up before the next old one goes
            await fleet.stop(i)
            await fleet.started(fleet.start(f"b{i}", i, 5))
        await until(lambda: set(fleet.delivered()) >= expected, 60, "every alert after the re-shard")
        reshard_done = sim.monotonic()
        waited = newcomer.messages("Source lock held by another replica; waiting to poll it.")
        assert waited, "index 4 never had to wait for a lock: the rolling case was not exercised"
        await until(
            lambda: all(set(c) for c in pollers(sim, reshard_done).values()), 20, "every tenant polled at 5"
        )
        moved = 0
        for tenant, clients in pollers(sim).items():
            name = next(n for n, t in SOURCES.items() if t == tenant)
            new = f"b{owner(name, 5)}"
            runs = [c for c, _ in itertools.groupby(clients)]
            # The phase-1 owner until it stopped, then the new owner: never both in turn.
            assert runs == [*before[name], new], f"{tenant} polled by {runs}"
            assert set(pollers(sim, reshard_done)[tenant]) == {new}
            moved += owner(name, 5) != owner(name, 4)
        assert 0 < moved <= 20, moved  # about 1/5 of 40 move, never the ones between the old four
        counts = fleet.delivered()
        assert set(counts) == expected and max(counts.values()) == 1, "lost or duplicated at count 5"

        # 3. SIGKILL one replica: its tenants wait for it, nothing is lost.
        victim = max(range(5), key=lambda i: sum(owner(n, 5) == i for n in SOURCES))
        victim_tenants = {t for n, t in SOURCES.items() if owner(n, 5) == victim}
        fleet.running.pop(victim).kill()
        killed_at = sim.monotonic()
        fresh = add_round(sim)
        others = {v for v in fresh if sim.alerts[v[0]]["tenantId"] not in victim_tenants}
        await until(lambda: set(fleet.delivered()) >= expected | others, 60, "the others' new alerts")
        await until(
            lambda: all(pollers(sim, time.monotonic() - 1.5)[t] for t in set(TENANTS) - victim_tenants),
            20,
            "the other tenants polled again",
        )
        # (Requests the killed process sent just before the kill may be served after it: they are its own.)
        stray = {
            t: [c for c in clients if c != f"b{victim}"]
            for t, clients in pollers(sim, killed_at).items()
            if t in victim_tenants
        }
        stray = {t: c for t, c in stray.items() if c}
        assert not stray, f"a killed replica's tenants were polled by another: {stray}"
        fleet.start(f"c{victim}", victim, 5)
        expected |= fresh
        await until(lambda: set(fleet.delivered()) >= expected, 60, "everything after the restart")
        counts = fleet.delivered()
        assert set(counts) == expected, "lost"
        assert sum(counts.values()) - len(counts) <= 50, "more than one batch repeated after the kill"
        for i in list(fleet.running):
            await fleet.stop(i)
    finally:
        fleet.kill_all()


def test_rendezvous_moves_only_what_the_new_shard_wins() -> None:
    """count -> count + 1 moves only sources to the new shard, about 1/(count + 1) of them."""
    names = [f"tenant-{i:04d}" for i in range(2000)]
    for count in (1, 2, 4, 8):
        old = {n: owner(n, count) for n in names}
        new = {n: owner(n, count + 1) for n in names}
        moved = [n for n in names if old[n] != new[n]]
        assert all(new[n] == count for n in moved)
        assert abs(len(moved) / len(names) - 1 / (count + 1)) < 0.04, (count, len(moved))
