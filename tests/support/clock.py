"""A monotonic clock running faster than the real one, for tests that need minutes of rate budget.

The agent (its ``Clock``) and the Graph simulator (its ``monotonic``) share one ``ScaledClock``: the
budget's 60-second window, Retry-After waits and the simulator's request log then all run on the
same accelerated time, and a minute passes in ``60 / scale`` real seconds. Wall time (``now``) stays
real, so alert timestamps and cursors are unaffected.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime


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
