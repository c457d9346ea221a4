"""One request budget per (tenant, app), shared by all of its streams and by its token requests.

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

**Kinds.** Every request names its kind (``"read"``: polling, health checks, tokens). A budget is
built with each kind's *share* of the window; a kind holding fewer slots than its share while it has
requests waiting is served before a kind at or above its own. With one kind (today) this is plain
first-come. Write-back (issue #16) adds a ``"write"`` kind with a documented share, so reads and
writes of one tenant can never starve each other.
"""

from __future__ import annotations

import contextlib
import math
from collections import Counter, deque
from collections.abc import AsyncIterator, Mapping

from agent.clock import Clock

WINDOW_SECS = 60.0
#: The kind of every request the Graph source sends today.
READ = "read"
#: Re-check interval while every slot is held by a request still on the way, or while another kind
#: below its share goes first (answers arrive at any moment; nothing to compute a wait from).
_RECHECK_SECS = 0.05
#: Float refill arithmetic must not spin on 1e-17 s sleeps.
_EPSILON = 1e-9


class RateBudget:
    """Exact sliding-window cap, token bucket, and a shared "blocked until" from Retry-After."""

    def __init__(
        self, requests_per_minute: int, clock: Clock, shares: Mapping[str, float] | None = None
    ) -> None:
        self.limit = requests_per_minute
        self.rate = requests_per_minute / WINDOW_SECS
        self.burst = max(1.0, float(requests_per_minute // 10))
        shares = dict(shares or {READ: 1.0})
        if not shares or any(s <= 0 for s in shares.values()) or sum(shares.values()) > 1.0 + _EPSILON:
            raise ValueError("shares must be positive and add up to at most 1")
        #: Slots each kind is guaranteed while it has requests waiting.
        self.reserved = {k: math.floor(s * requests_per_minute) for k, s in shares.items()}
        self._clock = clock
        self._tokens = self.burst
        self._stamp = clock.monotonic()
        self._blocked_until = 0.0
        self._flight: Counter[str] = Counter()  # granted, answer not back yet
        self._done: deque[tuple[float, str]] = deque()  # (answer time, kind) within the last window
        self._done_kinds: Counter[str] = Counter()
        self._waiting: Counter[str] = Counter()

    # -- state ---------------------------------------------------------------------------------

    def _expire(self, now: float) -> None:
        while self._done and self._done[0][0] <= now - WINDOW_SECS:
            _, kind = self._done.popleft()
            self._done_kinds[kind] -= 1

    def held(self, kind: str | None = None) -> int:
        """Slots held now (all kinds, or one): requests on the way plus answers of the last 60 s."""
        self._expire(self._clock.monotonic())
        if kind is None:
            return sum(self._flight.values()) + len(self._done)
        return self._flight[kind] + self._done_kinds[kind]

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

    def _yields(self, kind: str) -> bool:
        """Whether a waiting request of another kind, below its share, goes before this one."""
        if self.held(kind) < self.reserved[kind]:
            return False
        return any(n > 0 and k != kind and self.held(k) < self.reserved[k] for k, n in self._waiting.items())

    def _wait_needed(self, now: float, kind: str) -> tuple[float, bool]:
        """(seconds to wait, whether it is a Retry-After wait); (0, False) means grant now."""
        if now < self._blocked_until:
            return self._blocked_until - now, True
        self._refill(now)
        waits = []
        if self._tokens < 1.0 - _EPSILON:
            waits.append((1.0 - self._tokens) / self.rate)
        if self.held() >= self.limit:
            if self._done:  # never early: the oldest answer must be a full window old
                waits.append(max(self._done[0][0] + WINDOW_SECS - now, 1e-3))
            else:
                waits.append(_RECHECK_SECS)
        if not waits and self._yields(kind):
            waits.append(_RECHECK_SECS)
        return max(waits, default=0.0), False

    async def _acquire(self, kind: str) -> float:
        if kind not in self.reserved:
            raise ValueError(f"unknown request kind {kind!r}")
        waited_retry_after = 0.0
        self._waiting[kind] += 1
        try:
            for _ in range(10_000_000):
                now = self._clock.monotonic()
                wait, is_retry_after = self._wait_needed(now, kind)
                if wait <= 0:
                    self._tokens = max(0.0, self._tokens - 1.0)
                    self._flight[kind] += 1
                    return waited_retry_after
                if is_retry_after:
                    waited_retry_after += wait
                await self._clock.sleep(wait)
        finally:
            self._waiting[kind] -= 1
        raise RuntimeError("rate budget wait did not converge")  # pragma: no cover

    def _release(self, kind: str) -> None:
        self._flight[kind] -= 1
        self._done.append((self._clock.monotonic(), kind))
        self._done_kinds[kind] += 1

    @contextlib.asynccontextmanager
    async def slot(self, kind: str = READ) -> AsyncIterator[float]:
        """Hold one request slot of ``kind`` while the body runs; yields the seconds waited on Retry-After.

        Send the request inside the block and leave it once the answer (or the failure) is back: the
        slot counts until a full window after that. Cancellation while waiting consumes nothing.
        Raises ``ValueError`` for a kind the budget has no share for.
        """
        waited = await self._acquire(kind)
        try:
            yield waited
        finally:
            self._release(kind)
