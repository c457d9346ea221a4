"""What one stream forwards: every alert version once, every item without an identity dead-lettered once.

An alert *version* is ``(id, time field)``: with ``forward_updates = "all"`` each new
``lastUpdateDateTime`` of an id is forwarded, with ``"first"`` each id once. The memory of forwarded
versions (``emitted``) starts from the acknowledged checkpoint (``seen``) and grows with every batch
queued; each batch carries its additions as its ``Commit``, so after a restart nothing acknowledged
is forwarded again.

An item without a usable identity — no non-empty string ``id``, or a time field that is not an
ISO-8601 timestamp — cannot be deduplicated, so forwarding it would repeat it on every poll. It is
dead-lettered once with the reason (``SourceContext.reject``), counted, logged once, and remembered
in the same memory under a key of its own: ``!<id>``, or ``!sha256:<digest of the item>`` when it has
no id. The key's time is when the item was last seen, so it is kept while the item keeps coming back
and pruned like any version once it stops.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from typing import Any

import orjson

from agent.clock import Clock, now_str
from agent.metrics import AgentMetrics
from agent.model import Alert, Batch, Commit
from agent.nesting import cut_depth
from agent.sources.base import SourceContext
from agent.timestamps import sort_key

log = logging.getLogger(__name__)

#: Prefix of the memory keys of rejected items (Graph ids never start with it).
REJECTED = "!"


def fingerprint(item: Mapping[str, Any]) -> str:
    """A stable key for an item without an id: SHA-256 of its JSON (keys sorted, depth bounded)."""
    value, _ = cut_depth(dict(item))
    try:
        raw = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # lone surrogates, 64-bit overflow: repr is stable enough for a key
        raw = repr(value).encode("utf-8", "backslashreplace")
    return "sha256:" + hashlib.sha256(raw).hexdigest()


class StreamForwarder:
    """Deduplicates one stream's pages and emits what is new; rejects what has no identity."""

    def __init__(
        self,
        stream: str,
        time_field: str,
        by_version: bool,
        ctx: SourceContext,
        metrics: AgentMetrics,
        clock: Clock,
        seen: Mapping[str, str],
    ) -> None:
        self.stream = stream
        self.time_field = time_field
        self.by_version = by_version
        self.ctx = ctx
        self._m = metrics
        self._clock = clock
        #: id -> time field forwarded (acknowledged at startup, plus what this run queued).
        self.emitted: dict[str, str] = dict(seen)
        #: No remembered time orders before this ``sort_key`` (a lower bound, ``None``: unknown), so
        #: ``prune`` can tell without scanning ``emitted`` that it has nothing to forget.
        self._floor: str | None = None

    def _remember(self, key: str, value: str, sort: str) -> None:
        self.emitted[key] = value
        if self._floor is not None and sort < self._floor:
            self._floor = sort

    def is_new(self, item_id: str, key: str, value: str) -> bool:
        """Not forwarded yet: an unknown id, or (``forward_updates = "all"``) a later version of one.

        ``value`` is the item's time field, ``key`` its ``sort_key``.
        """
        previous = self.emitted.get(item_id)
        if previous is None:
            return True
        if not self.by_version or previous == value:  # a duplicate: no need to parse what is remembered
            return False
        return key > sort_key(previous)

    async def forward(self, items: list[dict[str, Any]], keys: list[str | None]) -> None:
        """Emit the new versions among ``items`` (``keys``: each one's ``sort_key``, or ``None`` when its
        time field is unusable) as one batch; reject items without identity. Raises ``Stopping``."""
        m = self._m
        fresh: list[Alert] = []
        seen: dict[str, str] = {}
        duplicates = 0
        field = self.time_field
        for item, key in zip(items, keys, strict=True):
            item_id = item.get("id")
            if key is None or not isinstance(item_id, str) or not item_id:
                await self._reject(item, item_id, seen)
                continue
            ts = item[field]
            if not self.is_new(item_id, key, ts):
                duplicates += 1
                continue
            fresh.append(item)
            seen[item_id] = ts
            self._remember(item_id, ts, key)
        m.alerts_fetched.labels(self.stream).inc(len(items))
        m.alerts_new.labels(self.stream).inc(len(fresh))
        if duplicates:
            m.alerts_duplicate.labels(self.stream).inc(duplicates)
        if fresh:
            await self.ctx.emit(Batch(self.stream, fresh, Commit(seen=seen)))
        elif seen:  # only rejected items: their keys still go to the checkpoint, behind earlier batches
            await self.ctx.advance(self.stream, Commit(seen=seen))

    async def _reject(self, item: dict[str, Any], item_id: object, seen: dict[str, str]) -> None:
        """Dead-letter ``item`` the first time it is seen; refresh its memory key every time."""
        has_id = isinstance(item_id, str) and bool(item_id)
        key = REJECTED + (str(item_id) if has_id else fingerprint(item))
        now = now_str(self._clock)
        first = key not in self.emitted
        seen[key] = now
        self._remember(key, now, sort_key(now))
        if not first:
            return
        reason = f"no usable {self.time_field}" if has_id else "no id"
        self._m.alerts_rejected.labels(self.stream, "no_timestamp" if has_id else "no_id").inc()
        log.warning(
            "Item without a usable id or timestamp; dead-lettered instead of forwarded.",
            extra={"stream": self.stream, "reason": reason, "id": str(item_id)[:100] if has_id else "-"},
        )
        if self.ctx.reject is not None:
            await self.ctx.reject(self.stream, item, reason)

    def prune(self, horizon: str, max_ids: int) -> tuple[str, int]:
        """Forget versions older than ``horizon``, then the oldest beyond ``max_ids``.

        Returns ``(prune_before, evicted)``: the checkpoint forgets what is older than ``prune_before``;
        ``evicted`` counts keys dropped by the cap (duplicates possible, never loss).
        """
        prune = horizon
        cut = sort_key(prune)
        if len(self.emitted) <= max_ids and self._floor is not None and self._floor >= cut:
            return prune, 0  # nothing older than the horizon, nothing beyond the cap: no scan
        kept: dict[str, str] = {}
        kept_keys: list[str] = []
        for k, v in self.emitted.items():
            sk = sort_key(v)
            if sk >= cut:
                kept[k] = v
                kept_keys.append(sk)
        evicted = 0
        excess = len(kept) - max_ids
        if excess > 0:
            ordered = sorted(kept.values(), key=sort_key)
            prune = ordered[excess]
            cut = sort_key(prune)
            before = len(kept)
            kept = {k: v for k, v in kept.items() if sort_key(v) >= cut}
            evicted = before - len(kept)
            self._floor = cut
        else:
            self._floor = min(kept_keys, default=None)
        self.emitted = kept
        return prune, evicted
