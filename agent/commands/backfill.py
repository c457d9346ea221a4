"""``siem-agent backfill --since T [--until T]``: replay one time window to the configured sinks, once.

It runs the real pipeline — queues, codecs, sink runners, retries, dead letters — with three
differences from ``run``:

* each source reads the bounded window ``{field} ge since and {field} lt until`` once
  (``Source.read_window``; ``field`` is ``lastUpdateDateTime``, or ``createdDateTime`` with
  ``forward_updates = "first"``), split in half windows where paging goes too deep, with no overlap
  and no dedup against the live checkpoint;
* the checkpoint lives in memory: the live ``<name>.checkpoint.json`` is never read or written, so
  a backfill can run next to the agent (it spends the same Graph request budget, though);
* it ends by itself once every window was read and every sink acknowledged everything, and then
  prints the counts. No ``/metrics`` endpoint and no systemd notifications.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

from agent.app import Agent
from agent.checkpoint import CheckpointStore, StreamState
from agent.checkpoint.state import apply_commit
from agent.clock import Clock, SystemClock, now_str
from agent.config import AgentSettings
from agent.model import Commit
from agent.sdnotify import Notifier
from agent.timestamps import format_dt, sort_key


def parse_instant(text: str) -> str:
    """An ISO-8601 instant as a Graph timestamp; a time without zone is UTC. Raises ``ValueError``."""
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        raise ValueError(f"not an ISO-8601 date or time: {text[:64]!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return format_dt(dt)


class MemoryCheckpoint(CheckpointStore):
    """A checkpoint that starts empty and is never written (the live one stays untouched)."""

    def load(self) -> dict[str, StreamState]:
        self.streams = {}
        return self.streams

    def open(self) -> dict[str, StreamState]:
        return self.load()

    def apply(self, stream: str, commit: Commit) -> None:
        apply_commit(self.streams, stream, commit)

    def save(self) -> None:
        return None

    def close(self) -> None:
        return None


def _total(agent: Agent, name: str) -> dict[str, float]:
    """Per-label totals of one counter family, keyed by its first label value."""
    out: dict[str, float] = {}
    for family in agent.registry.collect():
        for sample in family.samples:
            if sample.name == name:
                key = next(iter(sample.labels.values()), "")
                out[key] = out.get(key, 0.0) + sample.value
    return out


def summary(agent: Agent) -> list[str]:
    """The end-of-run counts: per stream fetched/new, per sink sent/dead-lettered/dropped."""
    fetched = _total(agent, "siem_agent_alerts_fetched_total")
    new = _total(agent, "siem_agent_alerts_new_total")
    sent = _total(agent, "siem_agent_events_sent_total")
    dead = _total(agent, "siem_agent_dead_lettered_total")
    lines = [
        f"stream {s}: {int(fetched.get(s, 0))} fetched, {int(new.get(s, 0))} forwarded"
        for s in sorted(fetched)
    ]
    for lane in agent.lanes:
        n = lane.sink.name
        lines.append(f"sink {n}: {int(sent.get(n, 0))} sent, {int(dead.get(n, 0))} dead-lettered")
    return lines


async def _progress(agent: Agent, out: TextIO, every: float = 1.0) -> None:
    for _ in range(10**9):
        fetched = sum(_total(agent, "siem_agent_alerts_fetched_total").values())
        sent = sum(_total(agent, "siem_agent_events_sent_total").values())
        out.write(f"\rbackfill: {int(fetched)} fetched, {int(sent)} sent ")
        out.flush()
        await asyncio.sleep(every)


async def backfill(
    settings: AgentSettings,
    since: str,
    until: str,
    clock: Clock | None = None,
    progress: TextIO | None = None,
    on_agent: Callable[[Agent], None] | None = None,
) -> tuple[int, Agent]:
    """Run the window through the pipeline; return ``(exit code, agent)``. Raises ``ValueError`` for
    an empty window."""
    if sort_key(since) >= sort_key(until):
        raise ValueError(f"--since {since} is not before --until {until}")
    clk = clock or SystemClock()
    one_shot = settings.model_copy(
        update={
            "http": settings.http.model_copy(update={"enabled": False}),
            "dead_letter_path": settings.dead_letter_path or settings.state_dir / "dead-letter.jsonl",
        }
    )
    store = MemoryCheckpoint(settings.state_dir, settings.name, lambda: now_str(clk))
    agent = Agent(
        one_shot,
        clock=clk,
        notifier=Notifier({}),
        checkpoint=store,
        window=(since, until),
        lock_state=False,
    )
    if on_agent is not None:
        on_agent(agent)
    ticker: asyncio.Task[Any] | None = None
    if progress is not None:
        ticker = asyncio.create_task(_progress(agent, progress), name="backfill:progress")
    try:
        code = await agent.run()
    finally:
        if ticker is not None and progress is not None:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            progress.write("\n")
    return code, agent
