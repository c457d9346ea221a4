"""A bounded queue of batches in front of one sink, sized in events.

``block`` (default) makes ``put`` wait for room, which pauses the source: backpressure, nothing lost.
``drop_newest`` refuses the batch when it does not fit and counts every dropped event. A batch
larger than the whole capacity is admitted when the queue is empty, so it can never deadlock.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Literal

from agent.metrics import AgentMetrics
from agent.model import Batch


class QueueClosed(Exception):
    """``put`` on a closed queue."""


class BoundedQueue:
    """FIFO of batches bounded by the number of events it holds."""

    def __init__(
        self,
        sink: str,
        max_events: int,
        when_full: Literal["block", "drop_newest"],
        metrics: AgentMetrics,
        wake_secs: float = 1.0,
    ) -> None:
        self.sink = sink
        self.max_events = max_events
        self.when_full = when_full
        self._items: deque[Batch] = deque()
        self._events = 0
        self._closed = False
        self._cond = asyncio.Condition()
        self._metrics = metrics
        self._wake_secs = wake_secs
        metrics.queue_capacity.labels(sink).set(max_events)
        metrics.queue_depth.labels(sink).set(0)

    @property
    def closed(self) -> bool:
        """Whether ``close`` was called (``get`` then drains what is left)."""
        return self._closed

    @property
    def events(self) -> int:
        """Events currently queued."""
        return self._events

    def _fits(self, n: int) -> bool:
        return self._events == 0 or self._events + n <= self.max_events

    async def put(self, batch: Batch, abort: asyncio.Event | None = None) -> bool:
        """Enqueue ``batch``; return ``False`` if it was dropped (``drop_newest``) or ``abort`` was set.

        In ``block`` mode waits for room; the wait re-checks ``abort`` at least every ``wake_secs``.
        Raises ``QueueClosed`` if the queue is closed.
        """
        n = len(batch.alerts)
        async with self._cond:
            if self._closed:
                raise QueueClosed(self.sink)
            if not self._fits(n):
                if self.when_full == "drop_newest":
                    self._metrics.dropped.labels(f"queue:{self.sink}", "queue_full").inc(n)
                    return False
                blocked = self._metrics.queue_blocked_seconds.labels(self.sink)
                mark = time.monotonic()
                try:
                    while not self._fits(n):
                        if self._closed:
                            raise QueueClosed(self.sink)
                        if abort is not None and abort.is_set():
                            return False
                        try:
                            async with asyncio.timeout(self._wake_secs):
                                await self._cond.wait()
                        except TimeoutError:
                            pass
                        # Count while blocked, not only afterwards, so a stall shows on /metrics.
                        now = time.monotonic()
                        blocked.inc(now - mark)
                        mark = now
                finally:
                    blocked.inc(time.monotonic() - mark)
            self._items.append(batch)
            self._events += n
            self._metrics.queue_depth.labels(self.sink).set(self._events)
            self._cond.notify_all()
            return True

    async def get(self, timeout: float | None, max_events: int | None = None) -> Batch | None:
        """Dequeue the oldest batch; ``None`` if ``timeout`` passed, the queue is closed and empty, or
        (with ``max_events``) the oldest batch has more alerts than that (it stays queued)."""
        async with self._cond:
            try:
                async with asyncio.timeout(timeout):
                    while not self._items:
                        if self._closed:
                            return None
                        await self._cond.wait()
            except TimeoutError:
                return None
            if max_events is not None and len(self._items[0].alerts) > max_events:
                return None
            batch = self._items.popleft()
            self._events -= len(batch.alerts)
            self._metrics.queue_depth.labels(self.sink).set(self._events)
            self._cond.notify_all()
            return batch

    async def close(self) -> None:
        """Refuse further puts; ``get`` returns what is left, then ``None``."""
        async with self._cond:
            self._closed = True
            self._cond.notify_all()
