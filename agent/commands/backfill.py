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

Each window is read newest page first, one bounded query per page, so every alert is fetched once
(the one at each page cut twice, counted as a duplicate): "fetched" is "forwarded" plus duplicates
plus rejected items. Progress (``agent.commands.progress``): the total comes from Graph's ``$count``;
on a terminal a bar shows done/total, rate and ETA, otherwise a log line every ``progress_every``
seconds and one at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TextIO

from tqdm.contrib.logging import logging_redirect_tqdm

from agent.app import Agent
from agent.checkpoint import CheckpointStore, StreamState
from agent.checkpoint.state import apply_commit
from agent.clock import Clock, SystemClock, now_str
from agent.commands.progress import BarReport, LogReport, Report, read_progress, report_progress
from agent.config import AgentSettings
from agent.model import Commit
from agent.sdnotify import Notifier
from agent.shard import ShardConfig
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
    """End-of-run counts: per stream fetched/forwarded/duplicates/rejected, per sink sent/dead-lettered."""
    fetched = _total(agent, "siem_agent_alerts_fetched_total")
    new = _total(agent, "siem_agent_alerts_new_total")
    dupes = _total(agent, "siem_agent_alerts_duplicate_total")
    rejected = _total(agent, "siem_agent_alerts_rejected_total")
    sent = _total(agent, "siem_agent_events_sent_total")
    dead = _total(agent, "siem_agent_dead_lettered_total")
    lines = [
        f"stream {s}: {int(fetched.get(s, 0))} fetched, {int(new.get(s, 0))} forwarded, "
        f"{int(dupes.get(s, 0))} duplicates, {int(rejected.get(s, 0))} rejected"
        for s in sorted(fetched)
    ]
    for lane in agent.lanes:
        n = lane.sink.name
        lines.append(f"sink {n}: {int(sent.get(n, 0))} sent, {int(dead.get(n, 0))} dead-lettered")
    return lines


async def backfill(
    settings: AgentSettings,
    since: str,
    until: str,
    clock: Clock | None = None,
    progress: TextIO | None = None,
    on_agent: Callable[[Agent], None] | None = None,
    progress_every: float = 10.0,
) -> tuple[int, Agent]:
    """Run the window through the pipeline; return ``(exit code, agent)``. Raises ``ValueError`` for
    an empty window. ``progress``: a terminal for the progress bar; ``None``: progress log lines."""
    if sort_key(since) >= sort_key(until):
        raise ValueError(f"--since {since} is not before --until {until}")
    clk = clock or SystemClock()
    one_shot = settings.model_copy(
        update={
            "http": settings.http.model_copy(update={"enabled": False}),
            "dead_letter_path": settings.dead_letter_path or settings.state_dir / "dead-letter.jsonl",
            # A replay reads every configured source, whichever replica polls it live.
            "shard": ShardConfig(),
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
    report: Report = BarReport(progress) if progress is not None else LogReport(clk, progress_every)
    streams = sum(len(s.service_sources or [""]) + int(s.incidents) for s in settings.sources)
    ticker = asyncio.create_task(report_progress(agent.registry, streams, report), name="backfill:progress")
    try:
        # On a terminal, log lines print above the bar instead of through it.
        with logging_redirect_tqdm() if progress is not None else contextlib.nullcontext():
            code = await agent.run()
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        report.close(read_progress(agent.registry, streams))
    return code, agent
