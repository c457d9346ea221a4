"""Time, injected: components take a ``Clock`` instead of calling ``time``/``datetime`` directly."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Protocol

from agent.timestamps import format_dt


class Clock(Protocol):
    """Wall time for cursors and logs, monotonic time for intervals, and sleeping."""

    def now(self) -> datetime: ...

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def now_str(clock: Clock) -> str:
    """The clock's wall time formatted like a Graph timestamp."""
    return format_dt(clock.now())
