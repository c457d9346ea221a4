"""One stream's incremental poll: the window, the cursor commit, and the loop that survives failures.

A poll reads ``{field} ge (cursor - overlap)`` (``field`` is ``lastUpdateDateTime``, or
``createdDateTime`` when only first versions are wanted) to its end through ``WindowReader`` (newest
page first, one fresh bounded query per page: ``reader.py``), handing every page to the
``StreamForwarder`` (dedup, emit, reject: ``forwarder.py``). The cursor means "every item with
``field`` below it has been fetched"; it is the newest timestamp the poll read, kept as the raw string
Graph wrote (never later than now: a future-dated item cannot push it past alerts still to come), and
it is committed (``ctx.advance``, the cursor-only commit) after the poll's last batch, so the ack
tracker applies it only once everything before it was delivered. A poll that fails commits nothing:
the next one reads the same window again, and dedup drops what was already forwarded. A poll that
found nothing new commits nothing either (the cursor did not move and no key was pruned): an idle
tenant costs no checkpoint write.

Schedule: the first poll waits ``first_delay`` (the agent spreads its sources' first polls over the
interval), then polls start on a fixed grid, ``poll_interval_secs`` apart, so sources stay spread; a
poll that overruns its slot is followed by the next free slot (never by a poll at once). After a
failure the stream backs off, and the grid starts again from the next poll. With an interval of 10 s
or more, start times are rounded up to a shared half-second tick (``POLL_TICK_SECS``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from datetime import timedelta
from typing import Any

from agent.checkpoint import StreamState
from agent.clock import Clock, now_str
from agent.errors import AuthError, SourceError, ThrottledError
from agent.metrics import AgentMetrics
from agent.model import Commit
from agent.retry import backoff
from agent.sources.base import SourceContext, Stopping
from agent.sources.config import GraphSecuritySourceConfig
from agent.sources.graph.client import GraphClient
from agent.sources.graph.forwarder import StreamForwarder
from agent.sources.graph.reader import ReadResult, StreamSpec, WindowReader
from agent.timestamps import format_dt, minus_seconds, sort_key

log = logging.getLogger(__name__)

#: A newest timestamp further than this in the future is logged when the cursor is held at now.
FUTURE_WARNING_SECS = 300.0
#: Polls of streams with an interval of at least ``COALESCE_MIN_INTERVAL_SECS`` start on this shared
#: tick (timer slack): a process with many tenants wakes a few times a second for a handful of polls
#: each instead of once per poll, which halves the CPU an idle poll costs (BENCHMARKS.md, Many
#: tenants). Polls per second stay as even as before: the tick is far below the interval.
POLL_TICK_SECS = 0.5
COALESCE_MIN_INTERVAL_SECS = 10.0

__all__ = ["StreamPoller", "StreamSpec"]


class StreamPoller:
    """Polls one stream until ``ctx.stop``; never raises for upstream failures (it backs off)."""

    def __init__(
        self,
        spec: StreamSpec,
        cfg: GraphSecuritySourceConfig,
        client: GraphClient,
        ctx: SourceContext,
        clock: Clock,
        metrics: AgentMetrics,
        first_delay: float = 0.0,
    ) -> None:
        self.spec = spec
        self.first_delay = first_delay
        self.stream = spec.stream
        self.cfg = cfg
        self.client = client
        self.ctx = ctx
        self.clock = clock
        self.metrics = metrics
        state = ctx.state.get(spec.stream, StreamState())
        self.cursor = state.cursor or format_dt(clock.now() - timedelta(seconds=cfg.initial_lookback_secs))
        #: The cursor as committed (``None``: nothing yet); a poll that would commit it unchanged does not.
        self._committed: str | None = state.cursor
        by_version = cfg.forward_updates == "all" and spec.time_field == "lastUpdateDateTime"
        self.forwarder = StreamForwarder(
            spec.stream, spec.time_field, by_version, ctx, metrics, clock, state.seen
        )
        self.reader = WindowReader(
            spec, self._get, self.forwarder.forward, client.root, cfg.max_pages_per_window, metrics
        )
        self._rng = random.Random()
        self._stopping: asyncio.Task[bool] | None = None

    async def _get(self, url: str, query: dict[str, str] | None) -> dict[str, Any]:
        """``client.get_json``, abandoned when the agent stops (budget and Retry-After waits can be long).

        Abandoning is safe: nothing of that page was emitted and the cursor was not committed.
        """
        if self.ctx.stop.is_set():
            raise Stopping
        request = asyncio.create_task(self.client.get_json(url, query), name=f"get:{self.stream}")
        if self._stopping is None:  # one waiter for the poller's life, not one per request
            self._stopping = asyncio.create_task(self.ctx.stop.wait(), name=f"stop-wait:{self.stream}")
        try:
            await asyncio.wait({request, self._stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not request.done():
                request.cancel()
            await asyncio.gather(request, return_exceptions=True)
        if request.cancelled():
            raise Stopping
        return request.result()

    # -- one poll, one window ------------------------------------------------------------------

    async def poll_once(self) -> ReadResult:
        """One complete poll: the open window from ``cursor - overlap``, then the cursor commit."""
        since = minus_seconds(self.cursor, self.cfg.overlap_secs)
        result = await self.reader.read(since, None)
        best = self.cursor
        if result.newest is not None and sort_key(result.newest) > sort_key(best):
            best = self._not_after_now(result.newest)
        await self._commit_final(best)
        return result

    async def _drop_waiter(self) -> None:
        if self._stopping is not None:
            waiter, self._stopping = self._stopping, None
            waiter.cancel()
            await asyncio.gather(waiter, return_exceptions=True)

    async def read_window(self, since: str, until: str) -> ReadResult:
        """Read ``[since, until)`` once (``backfill``), then advance the cursor to ``until``.

        Raises ``Stopping`` when the agent stops, and ``SourceError`` when the window cannot be read.
        """
        try:
            result = await self.reader.read(since, until)
        finally:
            await self._drop_waiter()
        await self.ctx.advance(self.stream, Commit(cursor=until))
        return result

    def _not_after_now(self, newest: str) -> str:
        now = now_str(self.clock)
        if sort_key(newest) <= sort_key(now):
            return newest
        if sort_key(newest) > sort_key(format_dt(self.clock.now() + timedelta(seconds=FUTURE_WARNING_SECS))):
            log.warning(
                "An item is dated in the future; the cursor stays at now.",
                extra={"stream": self.stream, "timestamp": newest[:40], "now": now},
            )
        return now

    async def _commit_final(self, best: str) -> None:
        horizon = minus_seconds(best, self.cfg.overlap_secs)
        prune, evicted = self.forwarder.prune(horizon, self.cfg.max_seen_ids)
        if evicted:
            self.metrics.seen_evicted.labels(self.stream).inc(evicted)
            log.warning(
                "Dedup memory full; forgot the oldest keys (duplicates possible, no loss).",
                extra={"stream": self.stream, "evicted": evicted, "max_seen_ids": self.cfg.max_seen_ids},
            )
        if best == self._committed and not evicted:
            # The checkpoint already has this cursor and this prune horizon (every key forwarded since
            # went to the checkpoint with its batch, and none is older than the horizon).
            return
        await self.ctx.advance(self.stream, Commit(cursor=best, prune_before=prune))
        self.cursor = self._committed = best

    # -- the loop ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Poll every ``poll_interval_secs`` until stopped; failures back off, never propagate."""
        try:
            await self._run()
        finally:
            await self._drop_waiter()

    async def _run(self) -> None:
        failures = 0
        m = self.metrics
        health = self.ctx.health
        if health is not None:
            health.expect_stream(self.stream, self.cfg.poll_interval_secs)
        if self.first_delay > 0 and await self._stopped_within(self.first_delay):
            return
        interval = self.cfg.poll_interval_secs
        while not self.ctx.stop.is_set():
            started = self.clock.monotonic()
            delay = interval
            try:
                await self.poll_once()
            except Stopping:
                return
            except ThrottledError as exc:
                m.poll_errors.labels(self.stream, "throttled").inc()
                delay = exc.retry_after  # the shared budget holds requests until then anyway
            except SourceError as exc:
                failures += 1
                reason = (
                    "auth" if isinstance(exc, AuthError) else ("transient" if exc.retriable else "request")
                )
                m.poll_errors.labels(self.stream, reason).inc()
                delay = self._error_delay(failures, exc)
                if not isinstance(exc, AuthError):  # the credential already logged its one line
                    log.error(
                        "Poll failed; backing off.",
                        extra={"stream": self.stream, "error": str(exc), "retry_in_secs": round(delay, 2)},
                    )
            except Exception as exc:  # supervision boundary: a bug must not stop the other streams
                failures += 1
                m.poll_errors.labels(self.stream, "internal").inc()
                delay = self._error_delay(failures, exc)
                log.exception("Poll crashed; backing off.", extra={"stream": self.stream, "error": repr(exc)})
            else:
                failures = 0
                m.poll_duration.labels(self.stream).observe(self.clock.monotonic() - started)
                m.last_poll_success.labels(self.stream).set(self.clock.now().timestamp())
                if health is not None:
                    health.poll_succeeded(self.stream)
                # The next slot of the grid after now: a poll that overran skips the slots it missed.
                elapsed = self.clock.monotonic() - started
                delay = interval * max(1, math.ceil(elapsed / interval - 1e-9)) - elapsed
            if await self._stopped_within(delay):
                return

    async def _stopped_within(self, seconds: float) -> bool:
        """Wait ``seconds`` (rounded up to the next ``POLL_TICK_SECS`` for long intervals) or until the
        agent stops; whether it stopped."""
        if self.cfg.poll_interval_secs >= COALESCE_MIN_INTERVAL_SECS:
            now = asyncio.get_running_loop().time()
            seconds = math.ceil((now + seconds) / POLL_TICK_SECS) * POLL_TICK_SECS - now
        try:
            async with asyncio.timeout(max(0.0, seconds)):
                await self.ctx.stop.wait()
        except TimeoutError:
            return False
        return True

    def _error_delay(self, failures: int, exc: BaseException) -> float:
        delay = backoff(
            failures, self.cfg.backoff_base_secs, self.cfg.error_backoff_max_secs, self._rng, min_fraction=0.5
        )
        if isinstance(exc, AuthError):
            delay = max(delay, self.client.auth_retry_in())
        return delay
