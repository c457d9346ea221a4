"""Claim: a SIGKILL at any moment loses nothing, and replays only what was in flight (README "How delivery works").

The real agent process (``python -m agent.cli run``) forwards a backlog of ``BACKLOG`` alerts from the
Graph simulator (HTTPS on 127.0.0.1, served by this test process) and is SIGKILLed ``KILLS`` times at
seeded-random points of delivery: after a random number (0 .. 3 batches) of newly delivered records,
0 meaning as soon as it logged "Agent started." — never after a fixed sleep. After each kill a few
alerts that already arrived get a new version. Then a last run drains everything. Asserted:

* every alert version that ever existed is at the receiver, and nothing else is;
* ``elasticsearch`` (osmem-server; only the agent is killed, osmem keeps its documents): each version
  exactly once — the sink's ``_id`` is derived from (id, lastUpdateDateTime), so replays are 409s;
* ``file`` (a stream sink, no de-duplication possible): duplicate records
  <= ``KILLS * 2 * (batch.max_events + page_size - 1)``. Per kill, two runner collections can be
  written but not yet in the checkpoint on disk: the one being written, and the one just acknowledged
  whose checkpoint write the kill pre-empted (``checkpoint_interval_secs = 0``). A collection is at most
  ``batch.max_events`` events plus one more source batch (≤ ``page_size``) that the runner's collect
  loop may add before it reaches the limit.

Runtime: about 15-25 s per sink.

``test_sigkill_at_default_settings_resends_at_most_one_batch_per_kill`` is issue #15's case: every
delivery setting at its default, a TCP sink, 5,000 alerts, 3 kills; at most ``batch.max_events``
re-sent per kill (the agent before the checkpoint journal re-sent 500-1,000 per kill here). ~10 s.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from agent.simulator.server import backdate
from tests.fakes.osmem import Osmem
from tests.support.agent_process import AgentProcess, agent_settings, fast_source, read_jsonl, write_config
from tests.support.simulator import SimEnv
from tests.support.wait import until

BACKLOG = 2000
KILLS = 20
PAGE_SIZE = 20
BATCH_MAX_EVENTS = 20
SEED = 20_261_127
INDEX = "crash-alerts"

Version = tuple[str, str]


def add_backlog(env: SimEnv, n: int) -> None:
    """``n`` alerts, 0.3 s apart, all inside the initial lookback."""
    start = backdate(900)
    for i in range(n):
        env.sim.add_alerts(1, when=start + timedelta(milliseconds=300 * i))


class Receiver:
    """What one sink's receiver holds, as alert versions (in arrival order where the sink has one)."""

    def __init__(self, kind: str, tmp_path: Path, osmem: Osmem | None) -> None:
        self.kind = kind
        self.path = tmp_path / "out.jsonl"
        self.osmem = osmem

    def sink(self) -> dict[str, Any]:
        common = {"codec": {"type": "json"}, "batch": {"max_events": BATCH_MAX_EVENTS, "timeout_secs": 0.05}}
        common["queue"] = {"max_events": 200}
        common["retry"] = {"initial_backoff_secs": 0.05, "max_backoff_secs": 0.5}
        if self.kind == "file":
            return {"type": "file", "name": "file", "path": str(self.path), **common}
        assert self.osmem is not None
        return {
            "type": "elasticsearch",
            "name": "es",
            "url": self.osmem.url,
            "index": INDEX,
            "timeout_secs": 10,
            **common,
        }

    def versions(self) -> list[Version]:
        if self.kind == "file":
            return [(str(r["id"]), str(r["lastUpdateDateTime"])) for r in read_jsonl(self.path)]
        assert self.osmem is not None
        self.osmem.request("POST", f"/{INDEX}/_refresh")
        doc = self.osmem.request("GET", f"/{INDEX}/_search?size=10000&_source=id,lastUpdateDateTime")
        hits = doc.get("hits", {}).get("hits", [])
        return [(str(h["_source"]["id"]), str(h["_source"]["lastUpdateDateTime"])) for h in hits]

    def progress(self) -> int:
        """Records delivered so far (cheap)."""
        if self.kind == "file":
            return self.path.read_bytes().count(b"\n") if self.path.exists() else 0
        assert self.osmem is not None
        self.osmem.request("POST", f"/{INDEX}/_refresh")
        return int(self.osmem.request("GET", f"/{INDEX}/_count").get("count", 0))


def current_versions(env: SimEnv) -> set[Version]:
    return {(a["id"], a["lastUpdateDateTime"]) for a in env.sim.alerts.values()}


def kill_point(agent: AgentProcess, receiver: Receiver, before: int, target: int) -> Callable[[], bool]:
    """When to kill: ``target`` records after ``before`` arrived (0: the agent has started); or it died."""
    if target == 0:
        return lambda: bool(agent.messages("Agent started.", this_run=True)) or not agent.alive()
    return lambda: receiver.progress() >= before + target or not agent.alive()


@pytest.fixture(params=["file", "elasticsearch"])
def receiver(request: pytest.FixtureRequest, tmp_path: Path) -> Receiver:
    osmem: Osmem | None = request.getfixturevalue("osmem") if request.param == "elasticsearch" else None
    return Receiver(request.param, tmp_path, osmem)


async def test_sigkill_during_delivery_loses_nothing(
    tmp_path: Path, graph_sim: SimEnv, receiver: Receiver
) -> None:
    """KILLS random SIGKILLs + restarts: every version delivered; duplicates within the sink's bound."""
    rng = random.Random(SEED)
    add_backlog(graph_sim, BACKLOG)
    expected: set[Version] = current_versions(graph_sim)
    settings = agent_settings(
        tmp_path / "state",
        [fast_source(graph_sim.source(), page_size=PAGE_SIZE)],
        [receiver.sink()],
    )
    agent = AgentProcess(write_config(tmp_path / "agent.toml", settings), tmp_path / "agent.log")
    updated: set[str] = set()
    kill_points: list[int] = []
    try:
        for _ in range(KILLS):
            before = receiver.progress()
            missing = len(expected - set(receiver.versions()))
            target = min(rng.randint(0, 3 * BATCH_MAX_EVENTS), missing)
            agent.start()
            await until(kill_point(agent, receiver, before, target), 30, f"{target} new records")
            assert agent.alive(), f"agent exited:\n{agent.log_text(this_run=True)[-3000:]}"
            agent.kill()
            kill_points.append(receiver.progress() - before)
            # New versions of a few alerts the receiver already has (their first version was seen).
            arrived = sorted({i for i, _ in receiver.versions()} - updated)
            for alert_id in rng.sample(arrived, min(5, len(arrived))):
                new = graph_sim.sim.update(alert_id)
                expected.add((alert_id, new["lastUpdateDateTime"]))
                updated.add(alert_id)

        agent.start()
        await until(
            lambda: receiver.progress() >= len(expected) and expected <= set(receiver.versions()),
            60,
            "every version at the receiver",
        )
        assert await agent.stop() == 0
    finally:
        agent.kill()

    got = receiver.versions()
    counts = Counter(got)
    assert set(counts) == expected, (
        f"lost {len(expected - set(counts))}, unexpected {len(set(counts) - expected)}"
    )
    duplicates = len(got) - len(counts)
    errors = [r for r in agent.log_records() if r.get("level") in ("error", "critical") or "raw" in r]
    assert errors == [], errors[:5]
    assert agent.starts == KILLS + 1
    assert len(updated) > 0 and sum(kill_points) > 0, "the kills must have happened during delivery"
    if receiver.kind == "elasticsearch":
        assert duplicates == 0, f"{duplicates} duplicate documents"
    else:
        bound = KILLS * 2 * (BATCH_MAX_EVENTS + PAGE_SIZE - 1)
        assert duplicates <= bound, f"{duplicates} duplicates > bound {bound} (kill points {kill_points})"


# -- issue #15: default settings, full speed, TCP ---------------------------------------------------

DEFAULT_BACKLOG = 5000
DEFAULT_KILLS = 3
DEFAULT_BATCH = 500  # batch.max_events's default (asserted below against the config model)


async def test_sigkill_at_default_settings_resends_at_most_one_batch_per_kill(
    tmp_path: Path, graph_sim: SimEnv
) -> None:
    """A 5,000-alert backlog over TCP at full speed, every delivery setting at its default (checkpoint,
    batch, queue, page size), SIGKILLed 3 times at seeded-random points while alerts stream: each kill
    makes the restarted agent re-send at most one batch (``batch.max_events``), and nothing is lost.

    Duplicates are attributed to the kill before the run that re-sent them: a version received after
    kill *k* that the receiver already had before it."""
    from agent.pipeline.config import BatchConfig
    from tests.fakes.syslog import TcpReceiver

    assert BatchConfig().max_events == DEFAULT_BATCH
    rng = random.Random(SEED + 15)
    start = backdate(1200)
    for i in range(DEFAULT_BACKLOG):
        graph_sim.sim.add_alerts(1, when=start + timedelta(milliseconds=200 * i))
    expected = current_versions(graph_sim)
    rcv = TcpReceiver()
    await rcv.start()
    sink = {"type": "tcp", "name": "tcp", "host": "127.0.0.1", "port": rcv.port, "codec": {"type": "json"}}
    source = fast_source(graph_sim.source(), poll_interval_secs=60.0)  # no Graph budget limit
    del source["page_size"]  # the default (500), like every delivery setting below
    settings = agent_settings(tmp_path / "state", [source], [sink])
    del settings["checkpoint_interval_secs"]
    agent = AgentProcess(write_config(tmp_path / "agent.toml", settings), tmp_path / "agent.log")

    def versions(messages: list[bytes]) -> list[Version]:
        docs = [orjson.loads(m) for m in messages]
        return [(str(d["id"]), str(d["lastUpdateDateTime"])) for d in docs]

    marks: list[int] = []  # receiver message count once each killed run's connection is gone
    try:
        for _ in range(DEFAULT_KILLS):
            goal = len(rcv.messages) + rng.randint(300, 1500)
            agent.start()
            await until(lambda g=goal: len(rcv.messages) >= g or not agent.alive(), 60, "deliveries")  # type: ignore[misc]
            assert agent.alive(), agent.log_text(this_run=True)[-3000:]
            agent.kill()
            await until(lambda: not rcv.conns, 10, "the killed agent's connection to close")
            marks.append(len(rcv.messages))
        agent.start()
        await until(
            lambda: len(rcv.messages) >= len(expected) and expected <= set(versions(rcv.messages)),
            60,
            "every version at the receiver",
        )
        assert await agent.stop() == 0
    finally:
        agent.kill()
        await rcv.stop()

    got = versions(rcv.messages)
    assert set(got) == expected, f"lost {len(expected - set(got))}, unexpected {len(set(got) - expected)}"
    bounds = [*marks, len(got)]
    per_kill = []
    for k, mark in enumerate(marks):
        earlier = set(got[:mark])
        per_kill.append(sum(1 for v in got[mark : bounds[k + 1]] if v in earlier))
    assert all(mark > 0 for mark in marks) and marks[-1] < len(expected), "kills must land mid-backlog"
    print(f"duplicates per kill: {per_kill} (kills after {marks} messages)")
    assert max(per_kill) <= DEFAULT_BATCH, f"duplicates per kill {per_kill} > one batch ({DEFAULT_BATCH})"
    errors = [r for r in agent.log_records() if r.get("level") in ("error", "critical") or "raw" in r]
    assert errors == [], errors[:5]
