"""``backfill`` progress: done/total from the agent's metrics, a tqdm bar on a terminal, log lines otherwise."""

from __future__ import annotations

import io
import logging
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry

from agent.commands.progress import BarReport, LogReport, Progress, read_progress
from agent.metrics import AgentMetrics


class StepClock:
    def __init__(self) -> None:
        self.t = 100.0

    def now(self) -> datetime:
        return datetime(2026, 11, 27, tzinfo=UTC)

    def monotonic(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += seconds


class TestReadProgress:
    def test_total_is_known_once_every_stream_has_counted(self) -> None:
        """done = fetched - duplicates; total = done + what Graph still counts, once each stream counted."""
        m = AgentMetrics(CollectorRegistry())
        m.alerts_fetched.labels("a").inc(501)
        m.alerts_duplicate.labels("a").inc(1)
        m.window_remaining.labels("a").set(1500)
        m.events_sent.labels("sink").inc(300)
        assert read_progress(m.registry, streams=2) == Progress(500, None, 300)
        m.window_remaining.labels("b").set(1000)
        assert read_progress(m.registry, streams=2) == Progress(500, 3000, 300)


class TestReports:
    def test_bar_shows_done_of_total_and_what_was_sent(self) -> None:
        out = io.StringIO()
        bar = BarReport(out)
        bar.update(Progress(0, None, 0))
        bar.update(Progress(400, 1000, 100))
        bar.close(Progress(1000, 1000, 1000))
        text = out.getvalue()
        assert "1000/1000" in text and "alert" in text and "sent 1000" in text

    def test_log_lines_every_interval_and_at_the_end(self, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.INFO)
        clock = StepClock()
        report = LogReport(clock, every=10.0)
        report.update(Progress(10, 1000, 0))  # too soon: no line
        clock.t += 10
        report.update(Progress(100, 1000, 50))
        clock.t += 5
        report.update(Progress(150, 1000, 60))  # too soon again
        clock.t += 5
        report.close(Progress(1000, 1000, 1000))
        lines = [r for r in caplog.records if r.getMessage() == "Backfill progress."]
        assert [(r.done, r.total) for r in lines] == [(100, 1000), (1000, 1000)]  # type: ignore[attr-defined]
        first = lines[0].__dict__
        assert first["rate_per_sec"] == 10.0 and first["eta_secs"] == 90 and first["percent"] == 10.0
