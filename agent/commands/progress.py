"""How far a ``backfill`` is: alerts read of the total Graph counted, the rate, the time left.

The numbers come from the agent's own metrics, so they mean what the metrics mean: *done* is every
alert read once (``alerts_fetched`` less ``alerts_duplicate``: the one alert at each page cut is read
twice and counted once), *total* is done plus what Graph still counts in the windows being read
(``graph_window_remaining``, from ``$count``; unknown until every stream has its first page), *sent*
is what the sinks delivered. On a terminal a tqdm bar shows them (done/total, rate, ETA); otherwise
one log line every ``every`` seconds, and a last one at the end.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Protocol, TextIO

from prometheus_client import CollectorRegistry
from tqdm import tqdm

from agent.clock import Clock

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Progress:
    """One reading of the counters."""

    done: int
    total: int | None
    sent: int


def read_progress(registry: CollectorRegistry, streams: int) -> Progress:
    """Current progress from ``registry``; ``total`` stays ``None`` until ``streams`` have a count."""
    sums = {"fetched": 0.0, "duplicate": 0.0, "sent": 0.0, "remaining": 0.0}
    counted: set[str] = set()
    names = {
        "siem_agent_alerts_fetched_total": "fetched",
        "siem_agent_alerts_duplicate_total": "duplicate",
        "siem_agent_events_sent_total": "sent",
        "siem_agent_graph_window_remaining": "remaining",
    }
    for family in registry.collect():
        for sample in family.samples:
            key = names.get(sample.name)
            if key is not None:
                sums[key] += sample.value
                if key == "remaining":
                    counted.add(sample.labels.get("stream", ""))
    done = int(sums["fetched"] - sums["duplicate"])
    total = done + int(sums["remaining"]) if len(counted) >= streams else None
    return Progress(done, total, int(sums["sent"]))


class Report(Protocol):
    """Where progress goes."""

    def update(self, progress: Progress) -> None: ...

    def close(self, progress: Progress) -> None: ...


class BarReport:
    """A tqdm bar on a terminal: done/total alerts, rate, ETA, and what the sinks sent."""

    def __init__(self, out: TextIO) -> None:
        self._bar = tqdm(total=None, unit="alert", file=out, dynamic_ncols=True, desc="backfill")

    def update(self, progress: Progress) -> None:
        bar = self._bar
        if progress.total is not None and bar.total != max(progress.total, progress.done):
            bar.total = max(progress.total, progress.done)
        bar.set_postfix_str(f"sent {progress.sent}", refresh=False)
        bar.update(progress.done - bar.n)

    def close(self, progress: Progress) -> None:
        self.update(progress)
        self._bar.close()


class LogReport:
    """One ``Backfill progress.`` line per ``every`` seconds (and one at the end): no redraws in logs."""

    def __init__(self, clock: Clock, every: float) -> None:
        self._clock = clock
        self._every = every
        self._started = clock.monotonic()
        self._last = self._started

    def update(self, progress: Progress) -> None:
        now = self._clock.monotonic()
        if now - self._last >= self._every:
            self._last = now
            self._line(progress, now)

    def close(self, progress: Progress) -> None:
        self._line(progress, self._clock.monotonic())

    def _line(self, progress: Progress, now: float) -> None:
        elapsed = max(now - self._started, 1e-9)
        rate = progress.done / elapsed
        extra: dict[str, object] = {
            "done": progress.done,
            "total": progress.total if progress.total is not None else "unknown",
            "sent": progress.sent,
            "rate_per_sec": round(rate, 1),
        }
        if progress.total is not None:
            extra["percent"] = round(100 * progress.done / max(progress.total, 1), 1)
            left = max(progress.total - progress.done, 0)
            extra["eta_secs"] = round(left / rate) if rate > 0 else "unknown"
        log.info("Backfill progress.", extra=extra)


async def report_progress(
    registry: CollectorRegistry, streams: int, report: Report, tick: float = 0.5
) -> None:
    """Update ``report`` every ``tick`` seconds until cancelled (the caller closes it)."""
    for _ in range(10**9):
        report.update(read_progress(registry, streams))
        await asyncio.sleep(tick)
