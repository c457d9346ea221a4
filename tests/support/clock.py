"""Clocks for tests: ``ScaledClock`` (below), ``VirtualClock`` (sleeps advance virtual time at once)
and ``FixedClock`` (one wall time, no waiting).

``ScaledClock``: a monotonic clock running faster than the real one, for tests that need minutes of
rate budget.

The agent (its ``Clock``) and the Graph simulator (its ``monotonic``) share one ``ScaledClock``: the
budget's 60-second window, Retry-After waits and the simulator's request log then all run on the
same accelerated time, and a minute passes in ``60 / scale`` real seconds. Wall time (``now``) stays
real, so alert timestamps and cursors are unaffected.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from datetime import UTC, datetime, timedelta


class ScaledClock:
    """``monotonic`` advances ``scale`` times faster than ``time.monotonic``; ``sleep`` waits accordingly."""

    def __init__(self, scale: float) -> None:
        self.scale = scale
        self._t0 = time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return self._t0 + (time.monotonic() - self._t0) * self.scale

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.scale)


class VirtualClock:
    """A clock whose sleeps advance virtual time instantly, in wake-up order."""

    def __init__(self) -> None:
        self.t = 1000.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._n = 0

    def now(self) -> datetime:
        return datetime(2026, 11, 27, tzinfo=UTC) + timedelta(seconds=self.t)

    def monotonic(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._n += 1
        heapq.heappush(self._sleepers, (self.t + max(0.0, seconds), self._n, fut))
        await fut

    async def run_until(self, end: float) -> None:
        """Advance time, waking sleepers in order, until ``end`` (bounded)."""
        for _ in range(1_000_000):
            for _ in range(20):
                await asyncio.sleep(0)  # let woken tasks run up to their next sleep
            if not self._sleepers or self._sleepers[0][0] > end:
                self.t = end
                return
            when, _, fut = heapq.heappop(self._sleepers)
            self.t = max(self.t, when)
            if not fut.done():
                fut.set_result(None)
        raise AssertionError("virtual clock did not settle")


class FixedClock:
    """Wall time fixed at ``at``; monotonic time stands still; a sleep only yields to the loop."""

    def __init__(self, at: datetime | None = None) -> None:
        self.at = at if at is not None else datetime(2030, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self.at

    def monotonic(self) -> float:
        return 0.0

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)
