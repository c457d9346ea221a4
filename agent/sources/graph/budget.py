"""One request budget per (tenant, app), shared by all of its streams, its writes and its token requests.

Graph allows "150 requests per minute" per app per tenant on the security API (Graph docs
``concepts/throttling-limits.md``). Three rules together:

* **Exact window.** A request holds a slot from the moment it is granted until 60 s after its answer
  (or its failure) came back, and at most ``requests_per_minute`` slots are held at any time. Graph
  sees a request arrive somewhere between those two moments, so no 60-second window *at Graph* ever
  holds more than the limit, however long a request was on the way. (Counting 60 s from the grant is
  not enough: a slow request and one granted 60 s later can arrive within the same minute.) Every
  attempt holds its own slot — retries, 429s, the repeat after a 401 — and so does every request of
  the token client (``agent.entra.gate``).
* **Token bucket.** Refilling at ``requests_per_minute / 60`` per second with a burst of a tenth of
  the minute (at least 1): requests are spread out instead of spent in the first second.
* **Retry-After.** A 429 (or a 5xx with ``Retry-After``) blocks the whole budget until then: no
  stream of that tenant sends anything earlier (requests already on the wire cannot be recalled).

**Kinds.** Every request names its kind: ``"poll"`` (polling, health checks, tokens) or ``"write"``
(write-back). With a ``share`` attached (``agent.sources.graph.share``, set by write-back) a kind that
used its guarantee yields to the other while that one waits below its own; without one, first come.

``slot(kind)`` is the way to send: it holds the slot for the request's whole life. ``acquire(kind)``
grants and releases at once (the slot counts from the grant), for callers that only need the pacing.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import AsyncIterator

from agent.clock import Clock
from agent.sources.graph.share import WINDOW_SECS, BudgetShare, Kind

#: The kind of every request the Graph source itself sends.
POLL: Kind = "poll"
#: Re-check interval while every slot is held by a request still on the way (answers arrive at any
#: moment; there is nothing to compute a wait from).
_RECHECK_SECS = 0.05
#: Float refill arithmetic must not spin on 1e-17 s sleeps.
_EPSILON = 1e-9


class RateBudget:
    """Exact sliding-window cap, token bucket, and a shared "blocked until" from Retry-After."""

    def __init__(self, requests_per_minute: int, clock: Clock) -> None:
        self.limit = requests_per_minute
        self.rate = requests_per_minute / WINDOW_SECS
        self.burst = max(1.0, float(requests_per_minute // 10))
        self._clock = clock
        self._tokens = self.burst
        self._stamp = clock.monotonic()
        self._blocked_until = 0.0
        self._flight = 0  # granted, answer not back yet
        self._done: deque[float] = deque()  # answer times within the last window
        #: How polls and writes split the budget; ``None`` (no write-back): every request is a poll.
        self.share: BudgetShare | None = None

    # -- state ---------------------------------------------------------------------------------

    def held(self) -> int:
        """Slots held now: requests on the way plus answers of the last 60 s."""
        now = self._clock.monotonic()
        while self._done and self._done[0] <= now - WINDOW_SECS:
            self._done.popleft()
        return self._flight + len(self._done)

    def available(self) -> float:
        """Requests that would be granted at once now (0 while a Retry-After block lasts)."""
        now = self._clock.monotonic()
        if now < self._blocked_until:
            return 0.0
        tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        return max(0.0, min(tokens, float(self.limit - self.held())))

    def block_for(self, seconds: float) -> None:
        """No request before ``seconds`` from now (a 429's Retry-After)."""
        self._blocked_until = max(self._blocked_until, self._clock.monotonic() + seconds)

    # -- granting ------------------------------------------------------------------------------

    def _refill(self, now: float) -> None:
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def _wait_needed(self, now: float) -> tuple[float, bool]:
        """(seconds to wait, whether it is a Retry-After wait); (0, False) means grant now."""
        if now < self._blocked_until:
            return self._blocked_until - now, True
        self._refill(now)
        waits = []
        if self._tokens < 1.0 - _EPSILON:
            waits.append((1.0 - self._tokens) / self.rate)
        if self.held() >= self.limit:
            if self._done:  # never early: the oldest answer must be a full window old
                waits.append(max(self._done[0] + WINDOW_SECS - now, 1e-3))
            else:
                waits.append(_RECHECK_SECS)
        return max(waits, default=0.0), False

    async def _grant(self, kind: Kind) -> float:
        """Wait for a slot of ``kind``; it is held (in flight) when this returns."""
        share = self.share
        if share is not None:
            share.enter(kind)
        try:
            waited_retry_after = 0.0
            for _ in range(10_000_000):
                now = self._clock.monotonic()
                wait, is_retry_after = self._wait_needed(now)
                if wait <= 0 and share is not None and share.must_yield(kind, now):
                    wait = max(1.0 / self.rate, 1e-3)  # the other kind takes this grant; look again after it
                if wait <= 0:
                    self._tokens = max(0.0, self._tokens - 1.0)
                    self._flight += 1
                    if share is not None:
                        share.granted(kind, now)
                    return waited_retry_after
                if is_retry_after:
                    waited_retry_after += wait
                await self._clock.sleep(wait)
        finally:
            if share is not None:
                share.leave(kind)
        raise RuntimeError("rate budget wait did not converge")  # pragma: no cover

    def _release(self) -> None:
        self._flight -= 1
        self._done.append(self._clock.monotonic())

    @contextlib.asynccontextmanager
    async def slot(self, kind: Kind = POLL) -> AsyncIterator[float]:
        """Hold one request slot of ``kind`` while the body runs; yields the seconds waited on Retry-After.

        Send the request inside the block and leave it once the answer (or the failure) is back: the
        slot counts until a full window after that. Cancellation while waiting consumes nothing.
        """
        waited = await self._grant(kind)
        try:
            yield waited
        finally:
            self._release()

    async def acquire(self, kind: Kind = POLL) -> float:
        """A slot granted and released at once (it counts from the grant); the seconds waited on
        Retry-After. For pacing only: a request sent after this may arrive later than the window
        assumes — send inside ``slot`` instead."""
        waited = await self._grant(kind)
        self._release()
        return waited
