"""Readiness bookkeeping: which streams polled recently and which sinks are up.

Sources declare their streams and poll interval, then report each complete poll; sink runners
report up/down. ``report()`` answers the operator's question "is it keeping up, and if not, where?"
for ``/readyz``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Stream:
    interval_secs: float
    last_ok: float | None = None


class Health:
    """Tracks streams and sinks; ``stale_polls`` intervals without a complete poll make a stream not ready."""

    def __init__(self, monotonic: Callable[[], float], stale_polls: float = 3.0) -> None:
        self._now = monotonic
        self.stale_polls = stale_polls
        self._streams: dict[str, _Stream] = {}
        self._sinks: dict[str, tuple[bool, str | None]] = {}
        self._waiting: dict[str, str] = {}
        self._started = monotonic()

    def expect_stream(self, stream: str, interval_secs: float) -> None:
        """Declare a stream that should complete a poll every ``interval_secs``."""
        self._streams.setdefault(stream, _Stream(interval_secs))

    def waiting(self, stream: str, reason: str | None) -> None:
        """A stream this replica owns but does not poll yet (``reason``), or no longer waits (``None``).

        Waiting does not make the agent not ready: during a rolling re-shard the replica that holds the
        lock may itself be waiting to be restarted, and a readiness gate would stall the rollout."""
        if reason is None:
            self._waiting.pop(stream, None)
        else:
            self._waiting[stream] = reason

    def poll_succeeded(self, stream: str) -> None:
        self._streams.setdefault(stream, _Stream(60.0)).last_ok = self._now()

    def sink_state(self, sink: str, up: bool, reason: str | None = None) -> None:
        """A sink's state; ``reason`` says why it is down (its last error: never a secret)."""
        self._sinks[sink] = (up, None if up else reason)

    def report(self) -> tuple[bool, list[str]]:
        """``(ready, lines)``: one line per stream and sink, saying what is wrong where."""
        now = self._now()
        lines: list[str] = []
        ready = True
        for name, s in sorted(self._streams.items()):
            limit = max(s.interval_secs * self.stale_polls, 30.0)
            since = now - (s.last_ok if s.last_ok is not None else self._started)
            if since > limit:
                ready = False
                what = (
                    "never polled successfully"
                    if s.last_ok is None
                    else f"last successful poll {since:.0f}s ago"
                )
                lines.append(f"stream {name}: NOT READY ({what})")
            else:
                lines.append(f"stream {name}: ok" if s.last_ok is not None else f"stream {name}: starting")
        for name, why in sorted(self._waiting.items()):
            lines.append(f"stream {name}: waiting ({why[:200]})")
        for name, (up, reason) in sorted(self._sinks.items()):
            if not up:
                ready = False
            why = f"down: {reason[:300]}" if reason else "down"
            lines.append(f"sink {name}: {'ok' if up else f'NOT READY ({why})'}")
        return ready, lines
