"""A large, static alert backlog rendered on demand (benchmarks: 100k or a million alerts).

Alert ``i`` of ``n`` is created (and last updated) at ``start + i * spacing``; its body is one of
``distinct`` simulator alerts (``make_alert``, made once) with its own id, URLs and timestamps, so
nothing per alert is stored and a page costs a dict copy per alert plus one ``orjson.dumps``.
Listing is Graph's: newest first, ``lastUpdateDateTime``/``createdDateTime`` bounds (both equal
here), offset paging. A ``serviceSource`` clause is refused (the backlog mixes sources). Rendered
pages are kept in a small LRU keyed by the index range they cover, so two clients paging the same
backlog (a benchmark's agent and its floor) get the second pass from memory.
"""

from __future__ import annotations

import random
import re
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from agent.simulator.alerts import make_alert
from agent.simulator.odata import compile_filter
from agent.timestamps import sort_key

_BOUND = re.compile(r"^(?:lastUpdateDateTime|createdDateTime)\s+(ge|gt|le|lt)\s+(\S+)$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TICKS = 10_000_000  # Graph's 100-ns ticks per second


def _ticks(ts: str) -> int:
    key = sort_key(ts)
    whole = datetime.strptime(key[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    return int((whole - _EPOCH).total_seconds()) * _TICKS + int(key[20:27])


def _format(ticks: int) -> str:
    seconds, frac = divmod(ticks, _TICKS)
    return f"{_EPOCH + timedelta(seconds=seconds):%Y-%m-%dT%H:%M:%S}.{frac:07d}Z"


class SyntheticBacklog:
    """``n`` alerts at ``start + i * spacing_secs`` (``i`` = 0 … n-1), rendered lazily; never changes."""

    def __init__(
        self,
        n: int,
        start: datetime,
        spacing_secs: float,
        tenant_id: str,
        seed: int = 11,
        distinct: int = 500,
        cached_pages: int = 128,
    ) -> None:
        rng = random.Random(seed)
        self.n = n
        self._t0 = _ticks(_format(int((start - _EPOCH).total_seconds() * _TICKS)))
        self._step = max(1, round(spacing_secs * _TICKS))
        self._tenant = tenant_id
        self._pool = [make_alert(rng, tenant_id, start, i) for i in range(max(1, min(distinct, n)))]
        self._pages: OrderedDict[tuple[int, int], bytes] = OrderedDict()
        self._max_pages = cached_pages

    def timestamp(self, i: int) -> str:
        """The creation (and last update) time of alert ``i``."""
        return _format(self._t0 + i * self._step)

    def alert(self, i: int) -> dict[str, Any]:
        """Alert ``i`` as Graph would list it."""
        ts = self.timestamp(i)
        alert_id = f"da{i:012d}_{self._t0 % 1_000_000:06d}"
        base = self._pool[i % len(self._pool)]
        return {
            **base,
            "id": alert_id,
            "providerAlertId": alert_id,
            "alertWebUrl": f"https://security.microsoft.com/alerts/{alert_id}?tid={self._tenant}",
            "createdDateTime": ts,
            "lastUpdateDateTime": ts,
            "firstActivityDateTime": ts,
            "lastActivityDateTime": ts,
        }

    def _range(self, filter_text: str) -> tuple[int, int]:
        """Indices ``[lo, hi)`` matching ``filter_text``; ``ValueError`` for what Graph would refuse."""
        compile_filter(filter_text)  # the same 400s as the stored alerts get
        lo, hi = 0, self.n
        for clause in filter(None, (c.strip() for c in filter_text.split(" and "))):
            m = _BOUND.match(clause)
            if m is None:
                raise ValueError("the synthetic backlog only filters on time")
            op, bound = m.group(1), _ticks(m.group(2))
            # First index whose time is >= bound (or > bound), by arithmetic on t0 + i * step.
            ge = max(0, -(-(bound - self._t0) // self._step))
            gt = max(0, (bound - self._t0) // self._step + 1)
            if op == "ge":
                lo = max(lo, ge)
            elif op == "gt":
                lo = max(lo, gt)
            elif op == "lt":
                hi = min(hi, ge)
            else:
                hi = min(hi, gt)
        return lo, max(lo, hi)

    def page(self, filter_text: str, skip: int, top: int) -> tuple[bytes, int]:
        """The JSON array of the page (newest first) and the number of matching alerts."""
        lo, hi = self._range(filter_text)
        total = hi - lo
        first = hi - 1 - skip
        last = max(lo, hi - skip - top)  # inclusive lower index of the page
        key = (first, last)
        body = self._pages.get(key)
        if body is None:
            body = orjson.dumps([self.alert(i) for i in range(first, last - 1, -1)])
            self._pages[key] = body
            if len(self._pages) > self._max_pages:
                self._pages.popitem(last=False)
        else:
            self._pages.move_to_end(key)
        return body, total
