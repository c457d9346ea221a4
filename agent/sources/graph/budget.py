"""One request budget per (tenant, app), shared by all of its streams.

Graph allows "150 requests per minute" per app per tenant on the security API. Two rules together:

* a token bucket refilling at ``requests_per_minute / 60`` per second with a burst of a tenth of the
  minute's allowance (at least 1) spreads requests out;
* a sliding log of the last ``requests_per_minute`` grants makes the limit exact: no 60-second window
  ever holds more than ``requests_per_minute`` requests, whatever the burst.

A 429 blocks the whole budget until its ``Retry-After`` has passed: no stream of that tenant sends
anything earlier (requests already on the wire cannot be recalled).

Polls and write-back spend the same budget; with a ``share`` attached (``agent.sources.graph.share``)
each ``acquire`` names its kind and a kind that used its guarantee yields to the other while that one
waits below its own.
"""

from __future__ import annotations

from collections import deque

from agent.clock import Clock
from agent.sources.graph.share import BudgetShare, Kind

WINDOW_SECS = 60.0


class RateBudget:
    """Token bucket plus exact sliding-window cap, with a shared "blocked until" from Retry-After."""

    def __init__(self, requests_per_minute: int, clock: Clock) -> None:
        self.limit = requests_per_minute
        self.rate = requests_per_minute / WINDOW_SECS
        self.burst = max(1.0, float(requests_per_minute // 10))
        self._clock = clock
        self._tokens = self.burst
        self._stamp = clock.monotonic()
        self._blocked_until = 0.0
        self._granted: deque[float] = deque(maxlen=requests_per_minute)
        #: How polls and writes split the budget; ``None`` (no write-back): every request is a poll.
        self.share: BudgetShare | None = None

    def _refill(self, now: float) -> None:
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def available(self) -> float:
        """Requests that would be granted at once now (0 while a Retry-After block lasts); read-only."""
        now = self._clock.monotonic()
        if now < self._blocked_until:
            return 0.0
        tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        in_window = sum(1 for t in self._granted if t > now - WINDOW_SECS)
        return max(0.0, min(tokens, float(self.limit - in_window)))

    def block_for(self, seconds: float) -> None:
        """No request before ``seconds`` from now (a 429's Retry-After)."""
        self._blocked_until = max(self._blocked_until, self._clock.monotonic() + seconds)

    def _wait_needed(self, now: float) -> tuple[float, bool]:
        """(seconds to wait, whether it is a Retry-After wait); (0, False) means grant now."""
        if now < self._blocked_until:
            return self._blocked_until - now, True
        self._refill(now)
        waits = []
        if self._tokens < 1.0 - 1e-9:  # tolerance: float refill arithmetic must not spin on 1e-17 s sleeps
            waits.append((1.0 - self._tokens) / self.rate)
        if len(self._granted) >= self.limit:
            oldest_expires = self._granted[0] + WINDOW_SECS - now
            if oldest_expires > 0:
                waits.append(max(oldest_expires, 1e-3))  # never early: the window limit is exact
        return max(waits, default=0.0), False

    async def acquire(self, kind: Kind = "poll") -> float:
        """Wait for a token and for any Retry-After to pass; return the seconds waited on Retry-After.

        ``kind`` says which share the request spends (see ``share``). Cancellation while waiting
        consumes nothing.
        """
        share = self.share
        if share is not None:
            share.enter(kind)
        try:
            return await self._acquire(kind, share)
        finally:
            if share is not None:
                share.leave(kind)

    async def _acquire(self, kind: Kind, share: BudgetShare | None) -> float:
        waited_retry_after = 0.0
        for _ in range(1_000_000):
            now = self._clock.monotonic()
            wait, is_retry_after = self._wait_needed(now)
            if wait <= 0 and share is not None and share.must_yield(kind, now):
                wait = max(1.0 / self.rate, 1e-3)  # the other kind takes this grant; look again after it
            if wait <= 0:
                self._tokens = max(0.0, self._tokens - 1.0)
                self._granted.append(now)
                if share is not None:
                    share.granted(kind, now)
                return waited_retry_after
            if is_retry_after:
                waited_retry_after += wait
            await self._clock.sleep(wait)
        raise RuntimeError("rate budget wait did not converge")  # pragma: no cover
