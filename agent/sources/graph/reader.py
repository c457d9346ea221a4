"""Reading one time window of a stream: the newest page of what is left, one fresh query at a time.

Graph lists alerts newest first (``api/security-list-alerts_v2.md``: "the most recent alerts are
displayed at the top") and pages with offsets (``$skip``/``$skiptoken`` in ``@odata.nextLink``).
Offset paging of a window that changes while it is read skips an item whenever one above it leaves
the window (an update moves it past the window's end), and Graph refuses deep offsets altogether.
So the reader does not page a window through its nextLinks; it *descends*:

1. ask for ``{field} ge lower [and {field} lt top]`` with ``$top`` and ``$count=true``: the newest
   page of the window, and how many items the window holds (``@odata.count``);
2. every item newer than the page's oldest timestamp ``t`` is now in hand (it would be on the page
   otherwise); unless the page says the window ended, ask again with ``top = t + 1 tick`` — keeping
   ``t`` itself, because more items may share it — and ``$top`` raised by the ``k`` items at ``t``
   already read (they come back first, as duplicates, so the page still brings ``page_size`` new ones).

Each request is a new query without an offset: nothing shifts under the reader, no offset grows deep,
no page is read twice, and a window of N items costs ``ceil(N / page_size)`` requests whatever its
shape in time (``$top`` never exceeds 2000, the largest ``page_size``; at that size the ``k`` repeated
items take room on the next page instead). The first count sizes the work (``on_remaining``).

* **More than a page at one instant** (a page whose items all share ``t``): that one-tick window
  cannot be cut by time, so it is paged through its nextLinks at ``page_size`` (its first page
  repeats the one that showed the instant); ``LinkChain`` allows the same origin only, no repeats,
  at most ``max_pages_per_window`` pages. The distinct ids received are checked against its count:
  read again when they fall short (offset paging skips an item when another leaves the window
  meanwhile), and the poll fails rather than move on after ``MAX_RECOUNTS`` short reads.
* **Pages not newest first** (Graph documents that they are; the fallback exists so that a change
  there costs requests, not alerts): the window is read through its nextLinks instead, split by
  time first while its count says it needs more than ``max_pages_per_window`` pages.

An alert that changes while a window is read is never lost: its update stamps it later than anything
the read returned (the first page fixed the top), so the next poll — which starts at or below the
cursor this poll commits, the newest timestamp read — finds the new version; an item that was read
and then leaves the window shifts nothing, because no offset is used; an item published late below
the part already read is read when the descent gets there, and one published above it by the next
poll's overlap.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from agent.errors import TransientSourceError, UpstreamProtocolError
from agent.metrics import AgentMetrics
from agent.sources.graph.pages import LinkChain, Origin, Page, parse_page
from agent.timestamps import from_ticks, sort_key, tick_after, to_ticks

log = logging.getLogger(__name__)

#: Extra reads of a chained window whose distinct ids fell short of its ``@odata.count``.
MAX_RECOUNTS = 2
#: Hard bound on the requests of one window read (the count usually bounds it far lower).
MAX_STEPS = 100_000
#: The largest ``$top`` sent (the largest ``page_size`` too).
MAX_TOP = 2000

#: ``fetch(url, params)``: one Graph GET (``params`` is ``None`` for a nextLink).
Fetch = Callable[[str, dict[str, str] | None], Awaitable[dict[str, Any]]]
#: ``consume(items, keys)``: hand a page on; ``keys[i]`` is ``sort_key`` of item ``i``'s time field,
#: or ``None`` when that is not a timestamp.
Consume = Callable[[list[dict[str, Any]], list[str | None]], Awaitable[None]]


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
class ReadResult:
    """What one window read saw."""

    newest: str | None = None  # the largest timestamp read, as Graph wrote it
    newest_key: str | None = None
    requests: int = 0
    items: int = 0
    counted: int | None = None  # @odata.count of the first page


@dataclass(slots=True)
class _Scan:
    """One page's timestamps against the window it was asked for."""

    keys: list[str | None] = field(default_factory=list)
    oldest: str | None = None  # the oldest timestamp inside the window, as written
    oldest_key: str | None = None
    at_oldest: int = 0  # items inside the window at exactly that instant
    inside: int = 0  # items inside the window
    ordered: bool = True  # newest first


class WindowReader:
    """Reads windows of one stream by descending from the newest page (see the module docstring)."""

    def __init__(
        self,
        spec: StreamSpec,
        fetch: Fetch,
        consume: Consume,
        root: Origin,
        max_chain_pages: int,
        metrics: AgentMetrics,
    ) -> None:
        self.spec = spec
        self._fetch = fetch
        self._consume = consume
        self._root = root
        self._max_chain = max_chain_pages
        self._remaining = metrics.window_remaining.labels(spec.stream)
        self._rereads = metrics.graph_rereads
        self._splits = metrics.window_splits.labels(spec.stream)

    # -- queries -------------------------------------------------------------------------------

    def _query(self, lower: str, top: str | None, carry: int = 0) -> dict[str, str]:
        f = self.spec.time_field
        clause = f"{f} ge {lower}"
        if top is not None:
            clause += f" and {f} lt {top}"
        if self.spec.service_source:
            clause += f" and serviceSource eq '{self.spec.service_source}'"
        size = max(self.spec.page_size, min(self.spec.page_size + carry, MAX_TOP))
        params = {"$filter": clause, "$top": str(size), "$count": "true"}
        if self.spec.expand:
            params["$expand"] = self.spec.expand
        return params

    async def _get(self, url: str, params: dict[str, str] | None, result: ReadResult) -> Page:
        result.requests += 1
        return parse_page(await self._fetch(url, params))

    async def _take(self, page: Page, lower_key: str, top: str | None, result: ReadResult) -> _Scan:
        """Scan ``page`` against ``[lower, top)``, hand it on, and update ``result``."""
        scan = _Scan()
        top_key = sort_key(top) if top is not None else None
        name = self.spec.time_field
        newest_key = result.newest_key
        for item in page.items:
            ts = item.get(name)
            try:
                key = sort_key(ts) if isinstance(ts, str) else None
            except ValueError:
                key = None
            scan.keys.append(key)
            if key is None:
                continue
            assert isinstance(ts, str)
            if newest_key is None or key > newest_key:
                result.newest, newest_key = ts, key
            if key < lower_key or (top_key is not None and key >= top_key):
                continue  # outside the window asked for: forwarded, but no cut is taken from it
            scan.inside += 1
            if scan.oldest_key is None or key < scan.oldest_key:
                scan.oldest, scan.oldest_key, scan.at_oldest = ts, key, 1
            elif key == scan.oldest_key:
                scan.at_oldest += 1
            else:
                scan.ordered = False  # newer than an item above it
        result.newest_key = newest_key
        result.items += len(page.items)
        await self._consume(page.items, scan.keys)
        return scan

    # -- the descent ---------------------------------------------------------------------------

    async def read(self, lower: str, upper: str | None) -> ReadResult:
        """Read every item of ``[lower, upper)`` (``upper=None``: open-ended) once; see the module docstring.

        Raises ``TransientSourceError``/``GraphStatusError``/``ThrottledError``/``AuthError`` from the
        requests, ``UpstreamProtocolError`` when Graph's pages contradict themselves or a nextLink may
        not be followed, and ``Stopping`` from ``fetch``/``consume``.
        """
        result = ReadResult()
        lower_key = sort_key(lower)
        top = upper
        carry = 0  # items at the last cut's instant, read already and asked for again
        steps = MAX_STEPS
        for step in range(MAX_STEPS):
            if step >= steps:
                raise UpstreamProtocolError(
                    f"window {lower} .. {top or 'now'} did not end after {step} pages "
                    f"(Graph counted {result.counted} items at the start)"
                )
            page = await self._get(self.spec.url, self._query(lower, top, carry), result)
            scan = await self._take(page, lower_key, top, result)
            if step == 0 and page.count is not None:
                result.counted = page.count
                steps = min(MAX_STEPS, 2 * math.ceil(page.count / self.spec.page_size) + 16)
            more = page.next_link is not None or (page.count is not None and page.count > len(page.items))
            if more and page.count is not None:
                self._remaining.set(page.count - len(page.items))
            if more and not scan.ordered:
                await self._scattered(lower, top, page, result)
                more = False
            if more and scan.oldest is None:
                if page.next_link is not None:
                    raise UpstreamProtocolError(
                        "Graph said more items follow but the page holds none inside the window asked for"
                    )
                more = False  # only the count says more: trust the items over it
            if not more:
                self._remaining.set(0)
                return result
            assert scan.oldest is not None
            oldest = from_ticks(to_ticks(scan.oldest))  # as the agent writes timestamps in queries
            instant = tick_after(oldest)
            asked_down_to_it = top is not None and to_ticks(top) == to_ticks(instant)
            if scan.at_oldest == scan.inside and (scan.at_oldest > 1 or asked_down_to_it):
                # A page that is one instant: page through that instant (its first page repeats this
                # one: the price of the rare bulk-stamped alerts), then go below it.
                self._rereads.labels(self.spec.stream, "instant").inc()
                await self._chain(oldest, instant, None, result)
                top, carry = oldest, 0
            else:
                top, carry = instant, scan.at_oldest
        raise AssertionError("unreachable")  # pragma: no cover

    # -- chained reads (nextLinks) -------------------------------------------------------------

    async def _chain(self, lower: str, top: str, first: Page | None, result: ReadResult) -> None:
        """Read ``[lower, top)`` through its nextLinks from ``first`` (fetched when ``None``); read it
        again when the distinct ids received fall short of its count (offset paging skips an item
        when another leaves the window meanwhile)."""
        lower_key = sort_key(lower)
        for attempt in range(MAX_RECOUNTS + 1):
            if first is None:
                first = await self._get(self.spec.url, self._query(lower, top), result)
                await self._take(first, lower_key, top, result)
            ids = _ids(first.items)
            links = LinkChain(self._root)
            page = first
            for n in range(self._max_chain):
                if page.next_link is None:
                    break
                if n + 1 >= self._max_chain:
                    raise TransientSourceError(
                        f"window {lower} .. {top} needs more than max_pages_per_window "
                        f"({self._max_chain}) pages through its nextLinks"
                    )
                page = await self._get(links.follow(page.next_link), None, result)
                await self._take(page, lower_key, top, result)
                ids |= _ids(page.items)
            if first.count is None or len(ids) >= first.count:
                return
            if attempt == MAX_RECOUNTS:  # never move on past an item offset paging may have skipped
                raise TransientSourceError(
                    f"window {lower} .. {top} kept changing while it was paged: {len(ids)} items "
                    f"received of {first.count} counted, {MAX_RECOUNTS + 1} times"
                )
            log.warning(
                "Window returned fewer items than counted; reading it again.",
                extra={
                    "stream": self.spec.stream,
                    "since": lower,
                    "until": top,
                    "count": first.count,
                    "received": len(ids),
                },
            )
            self._rereads.labels(self.spec.stream, "short_count").inc()
            first = None

    async def _scattered(self, lower: str, top: str | None, first: Page, result: ReadResult) -> None:
        """Pages not newest first: read windows through their nextLinks, split in halves by time first
        while a window's count says it needs more than ``max_pages_per_window`` pages."""
        log.warning(
            "Graph pages are not newest first; reading the window through its nextLinks.",
            extra={"stream": self.spec.stream, "since": lower},
        )
        # Open-ended: what arrives after this read is newer than anything it saw (the next poll's).
        end = top if top is not None else tick_after(result.newest or lower)
        cap = self._max_chain * self.spec.page_size
        pending: list[tuple[str, str, Page | None]] = [(lower, end, first)]
        for _ in range(MAX_STEPS):
            if not pending:
                return
            a, b, page = pending.pop()
            if page is None:
                page = await self._get(self.spec.url, self._query(a, b), result)
                await self._take(page, sort_key(a), b, result)
            ta, tb = to_ticks(a), to_ticks(b)
            if page.count is not None and page.count > cap and tb - ta > 1:
                self._splits.inc()
                mid = from_ticks((ta + tb) // 2)
                pending += [(mid, b, None), (a, mid, None)]
                continue
            await self._chain(a, b, page, result)
        raise UpstreamProtocolError("window splitting did not converge")  # pragma: no cover


def _ids(items: list[dict[str, Any]]) -> set[str]:
    return {i for i in (a.get("id") for a in items) if isinstance(i, str)}
