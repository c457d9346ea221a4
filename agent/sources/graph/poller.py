"""One stream's incremental poll: time windows, nextLink paging, dedup, window splitting, commits.

A poll reads ``{field} ge (cursor - overlap)`` (``field`` is ``lastUpdateDateTime``, or
``createdDateTime`` when only first versions are wanted) and follows ``@odata.nextLink`` to the end.
The cursor means "every item with ``field`` below it has been fetched"; it is the largest timestamp
seen, kept as the raw string Graph wrote, and it is committed (``ctx.advance``, the cursor-only
commit) only after the last batch of a poll, so the ack tracker applies it after everything before it
was delivered.

When a window needs more than ``max_pages_per_window`` pages, or a nextLink request keeps failing,
the poll stops paging. What the open-ended window returned newest first is in hand (items only ever
enter it, so offset paging cannot have skipped any); the rest is read as two half windows ``ge A and
lt M`` / ``ge M and lt B``, oldest first, each split again as a whole if it is still too deep. Only
after a whole half window has been read is the cursor committed to its upper bound, so a committed
cursor never passes an item not yet fetched. Bounded windows also ask for ``$count`` and are read
again if fewer items arrived than counted (offset paging skips an item when another one leaves the
window meanwhile).
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from agent.checkpoint import StreamState
from agent.clock import Clock
from agent.errors import AuthError, SourceError, ThrottledError, TransientSourceError
from agent.metrics import AgentMetrics
from agent.model import Alert, Batch, Commit
from agent.retry import backoff
from agent.sources.base import SourceContext, Stopping
from agent.sources.config import GraphSecuritySourceConfig
from agent.sources.graph.client import GraphClient, GraphStatusError
from agent.timestamps import format_dt, minus_seconds, sort_key

log = logging.getLogger(__name__)

MAX_PAGES = 100_000
#: Extra reads of a bounded window whose item count fell short of ``@odata.count``.
MAX_RECOUNTS = 2
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_ticks(ts: str) -> int:
    """``ts`` as 100-ns ticks since the epoch (Graph's 7-digit precision; finer digits are floored)."""
    key = sort_key(ts)
    whole = datetime.strptime(key[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    return int((whole - _EPOCH).total_seconds()) * 10_000_000 + int(key[20:27])


def from_ticks(ticks: int) -> str:
    """100-ns ticks since the epoch as a Graph timestamp (seven fractional digits, ``Z``)."""
    seconds, frac = divmod(ticks, 10_000_000)
    return f"{_EPOCH + timedelta(seconds=seconds):%Y-%m-%dT%H:%M:%S}.{frac:07d}Z"


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """What one stream reads."""

    stream: str  # checkpoint key
    url: str  # collection URL
    time_field: str  # lastUpdateDateTime | createdDateTime
    page_size: int
    service_source: str = ""
    expand: str | None = None


@dataclass(slots=True)
class _Pass:
    """Outcome of reading one window until its end or until paging had to stop."""

    complete: bool = True
    best: str | None = None  # largest time seen
    oldest: str | None = None  # smallest time seen
    ordered: bool = True  # pages came newest first, as Graph documents
    ids: set[str] = field(default_factory=set)
    count: int | None = None  # @odata.count of the first page, when asked


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
    ) -> None:
        self.spec = spec
        self.stream = spec.stream
        self.cfg = cfg
        self.client = client
        self.ctx = ctx
        self.clock = clock
        self.metrics = metrics
        state = ctx.state.get(spec.stream, StreamState())
        self.cursor = state.cursor or format_dt(clock.now() - timedelta(seconds=cfg.initial_lookback_secs))
        #: id -> time field forwarded (acknowledged at startup, plus what this run queued).
        self.emitted: dict[str, str] = dict(state.seen)
        self.by_version = cfg.forward_updates == "all" and spec.time_field == "lastUpdateDateTime"
        self._rng = random.Random()

    # -- one window ----------------------------------------------------------------------------

    def _filter(self, since: str, until: str | None) -> str:
        f = self.spec.time_field
        clause = f"{f} ge {since}"
        if until is not None:
            clause += f" and {f} lt {until}"
        if self.spec.service_source:
            clause += f" and serviceSource eq '{self.spec.service_source}'"
        return clause

    def _is_new(self, item_id: str, key: str) -> bool:
        """Not forwarded yet: an unknown id, or (``forward_updates = "all"``) a later version of one."""
        previous = self.emitted.get(item_id)
        if previous is None:
            return True
        return self.by_version and key > sort_key(previous)

    async def _page(self, items: list[dict[str, Any]], result: _Pass) -> None:
        m = self.metrics
        fresh: list[Alert] = []
        seen: dict[str, str] = {}
        # The keys of the page's running bounds, kept beside them (one sort_key per item, not four).
        oldest_key = sort_key(result.oldest) if result.oldest is not None else None
        best_key = sort_key(result.best) if result.best is not None else None
        for item in items:
            item_id, ts = item.get("id"), item.get(self.spec.time_field)
            try:
                key = sort_key(ts) if isinstance(ts, str) else None
            except ValueError:
                key = None
            if not isinstance(item_id, str) or key is None or not isinstance(ts, str):
                log.warning("Item without id or timestamp forwarded as is.", extra={"stream": self.stream})
                fresh.append(item)  # cannot deduplicate what has no identity: forward rather than lose
                continue
            result.ids.add(item_id)
            if oldest_key is not None and key > oldest_key:
                result.ordered = False
            if oldest_key is None or key < oldest_key:
                result.oldest, oldest_key = ts, key
            if best_key is None or key > best_key:
                result.best, best_key = ts, key
            if not self._is_new(item_id, key):
                m.alerts_duplicate.labels(self.stream).inc()
                continue
            fresh.append(item)
            seen[item_id] = ts
            self.emitted[item_id] = ts
        m.alerts_fetched.labels(self.stream).inc(len(items))
        m.alerts_new.labels(self.stream).inc(len(fresh))
        if fresh:
            await self.ctx.emit(Batch(self.stream, fresh, Commit(seen=seen)))

    async def _read(self, since: str, until: str | None, page_limit: int) -> _Pass:
        """Read the window ``[since, until)`` (open-ended without ``until``) page by page."""
        params = {"$filter": self._filter(since, until), "$top": str(self.spec.page_size)}
        if until is not None:
            params["$count"] = "true"
        if self.spec.expand:
            params["$expand"] = self.spec.expand
        result = _Pass()
        url: str | None = self.spec.url
        query: dict[str, str] | None = params
        for n in range(MAX_PAGES):
            if url is None:
                return result
            if n >= page_limit:
                result.complete = False
                return result
            if self.ctx.stop.is_set():
                raise Stopping
            try:
                doc = await self._get(url, query)
            except (TransientSourceError, GraphStatusError) as exc:
                if n == 0:
                    raise  # the window itself cannot be read: the poll fails and backs off
                log.warning(
                    "Paging stalled; splitting the window.",
                    extra={"stream": self.stream, "page": n + 1, "error": str(exc)},
                )
                result.complete = False
                return result
            items = doc.get("value")
            if not isinstance(items, list) or not all(isinstance(a, dict) for a in items):
                raise TransientSourceError("Graph page has no 'value' list of objects")
            if n == 0 and isinstance(doc.get("@odata.count"), int):
                result.count = doc["@odata.count"]
            await self._page(items, result)
            link = doc.get("@odata.nextLink")
            url = link if isinstance(link, str) and link else None
            query = None
        raise TransientSourceError(f"more than {MAX_PAGES} pages in one window")  # pragma: no cover

    async def _get(self, url: str, query: dict[str, str] | None) -> dict[str, Any]:
        """``client.get_json``, abandoned when the agent stops (budget and Retry-After waits can be long).

        Abandoning is safe: nothing of that page was emitted and the cursor was not committed.
        """
        request = asyncio.create_task(self.client.get_json(url, query), name=f"get:{self.stream}")
        stopping = asyncio.create_task(self.ctx.stop.wait(), name=f"stop-wait:{self.stream}")
        try:
            await asyncio.wait({request, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not request.done():
                request.cancel()
            await asyncio.gather(request, stopping, return_exceptions=True)
        if request.cancelled():
            raise Stopping
        return request.result()

    # -- one poll ------------------------------------------------------------------------------

    async def poll_once(self) -> None:
        """One complete poll: the open window, split windows if needed, then the cursor commit."""
        since = minus_seconds(self.cursor, self.cfg.overlap_secs)
        best = self.cursor
        first = await self._read(since, None, self.cfg.max_pages_per_window)
        if first.best is not None and sort_key(first.best) > sort_key(best):
            best = first.best
        if not first.complete:
            # Newest first: everything newer than the oldest item read is in hand; the rest is split.
            # Pages out of order: nothing can be assumed, so the whole window is read again.
            top = first.oldest if first.ordered and first.oldest else best
            upper = from_ticks(to_ticks(top) + 1)
            newest = await self.read_window(since, upper)
            if newest is not None and sort_key(newest) > sort_key(best):
                best = newest
        await self._commit_final(best)

    async def read_window(self, since: str, until: str) -> str | None:
        """Read ``[since, until)`` in half windows, oldest first; commit each upper bound once fully read.

        Returns the largest timestamp seen (``None`` for an empty window). Raises ``Stopping`` when the
        agent stops, and ``SourceError`` when a window cannot be read.

        A half window that again needs too many pages is split again *as a whole*: unlike the
        open-ended window, items leave a bounded window while it is read (an update moves them past
        its end), so offset paging may have skipped one, and nothing of an incomplete pass counts.
        """
        best: str | None = None
        pending = list(reversed(self._halves(since, until)))  # a stack: the oldest window is last
        for _ in range(MAX_PAGES):
            if not pending:
                return best
            a, b = pending.pop()
            divisible = to_ticks(b) - to_ticks(a) > 1
            result = await self._read_counted(a, b, self.cfg.max_pages_per_window if divisible else MAX_PAGES)
            if result.best is not None and (best is None or sort_key(result.best) > sort_key(best)):
                best = result.best
            if result.complete:
                # Everything below ``b`` is now read (older windows came first): the cursor may move there.
                await self.ctx.advance(self.stream, Commit(cursor=b))
                continue
            if not divisible:
                raise TransientSourceError(f"paging stalled in the one-tick window at {a}")
            pending.extend(reversed(self._halves(a, b)))
        raise TransientSourceError("window splitting did not converge")  # pragma: no cover

    def _halves(self, a: str, b: str) -> list[tuple[str, str]]:
        ta, tb = to_ticks(a), to_ticks(b)
        if tb - ta <= 1:
            return [(a, b)]
        self.metrics.window_splits.labels(self.stream).inc()
        mid = from_ticks((ta + tb) // 2)
        log.info(
            "Splitting a poll window.", extra={"stream": self.stream, "since": a, "mid": mid, "until": b}
        )
        return [(a, mid), (mid, b)]

    async def _read_counted(self, a: str, b: str, page_limit: int) -> _Pass:
        result = await self._read(a, b, page_limit)
        for _ in range(MAX_RECOUNTS):
            if not result.complete or result.count is None or len(result.ids) >= result.count:
                break
            log.warning(
                "Window returned fewer items than counted; reading it again.",
                extra={
                    "stream": self.stream,
                    "since": a,
                    "until": b,
                    "count": result.count,
                    "received": len(result.ids),
                },
            )
            again = await self._read(a, b, page_limit)
            again.ids |= result.ids
            if result.best is not None and (
                again.best is None or sort_key(result.best) > sort_key(again.best)
            ):
                again.best = result.best
            result = again
        return result

    async def _commit_final(self, best: str) -> None:
        prune = minus_seconds(best, self.cfg.overlap_secs)
        horizon = sort_key(prune)
        kept = {k: v for k, v in self.emitted.items() if sort_key(v) >= horizon}
        excess = len(kept) - self.cfg.max_seen_ids
        if excess > 0:
            ordered = sorted(kept.values(), key=sort_key)
            prune = ordered[excess]
            horizon = sort_key(prune)
            before = len(kept)
            kept = {k: v for k, v in kept.items() if sort_key(v) >= horizon}
            evicted = before - len(kept)
            self.metrics.seen_evicted.labels(self.stream).inc(evicted)
            log.warning(
                "Dedup memory full; forgot the oldest keys (duplicates possible, no loss).",
                extra={"stream": self.stream, "evicted": evicted, "max_seen_ids": self.cfg.max_seen_ids},
            )
        await self.ctx.advance(self.stream, Commit(cursor=best, prune_before=prune))
        self.cursor = best
        self.emitted = kept

    # -- the loop ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Poll every ``poll_interval_secs`` until stopped; failures back off, never propagate."""
        failures = 0
        m = self.metrics
        health = self.ctx.health
        if health is not None:
            health.expect_stream(self.stream, self.cfg.poll_interval_secs)
        while not self.ctx.stop.is_set():
            started = self.clock.monotonic()
            delay = self.cfg.poll_interval_secs
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
            try:
                async with asyncio.timeout(delay):
                    await self.ctx.stop.wait()
            except TimeoutError:
                pass

    def _error_delay(self, failures: int, exc: BaseException) -> float:
        delay = backoff(
            failures, self.cfg.backoff_base_secs, self.cfg.error_backoff_max_secs, self._rng, min_fraction=0.5
        )
        if isinstance(exc, AuthError):
            delay = max(delay, self.client.auth_retry_in())
        return delay
