"""The locks of the sources one replica owns (``agent.sourcelock``): taken at once when free, waited
for when another replica still holds them (a rolling re-shard), released when the agent stops.

Waiting does not poll the source: the lock is tried again every ``retry_secs``; the first failed try
and then one every ~5 minutes log ``Source lock held by another replica; waiting to poll it.`` with
the holder (host and pid), and ``/readyz`` lists the source's streams as waiting meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

from agent.checkpoint.sources import source_dir
from agent.health import Health
from agent.sourcelock import FileLock

log = logging.getLogger(__name__)

#: How often the waiting line is repeated while a lock stays held.
LOG_EVERY_SECS = 300.0


class Ownership:
    """Source locks of one replica (``enabled=False``: every source counts as held, nothing locked)."""

    def __init__(self, state_dir: Path, health: Health, retry_secs: float, enabled: bool = True) -> None:
        self._state_dir = state_dir
        self._health = health
        self.retry_secs = retry_secs
        self._enabled = enabled
        self._locks: dict[str, FileLock] = {}

    def take(self, source: str) -> bool:
        """Take ``source``'s lock if it is free; whether it is held now. Raises ``StateError``."""
        if not self._enabled:
            return True
        lock = self._locks.setdefault(source, FileLock(source_dir(self._state_dir, source) / "lock"))
        return lock.try_acquire()

    async def wait(self, source: str, streams: Sequence[str], stop: asyncio.Event) -> bool:
        """Wait until ``source``'s lock is taken (``True``) or ``stop`` is set (``False``)."""
        every = max(1, round(LOG_EVERY_SECS / self.retry_secs))
        for attempt in range(1_000_000_000):  # ~150 years at 5 s
            if self.take(source):
                for stream in streams:
                    self._health.waiting(stream, None)
                if attempt:
                    log.info("Source lock acquired.", extra={"source": source})
                return True
            holder = self._locks[source].holder()
            for stream in streams:
                self._health.waiting(stream, f"its source's lock is held by {holder}")
            if attempt % every == 0:
                log.warning(
                    "Source lock held by another replica; waiting to poll it.",
                    extra={"source": source, "holder": holder, "retry_secs": self.retry_secs},
                )
            try:
                async with asyncio.timeout(self.retry_secs):
                    await stop.wait()
                return False
            except TimeoutError:
                continue
        return False  # pragma: no cover

    def release_all(self) -> None:
        for lock in self._locks.values():
            lock.release()
