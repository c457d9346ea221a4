"""Dead-letter file: events a receiver rejected permanently, one JSON object per line.

Each line is ``{"time": …, "sink": …, "reason": …, "alert": {…}}`` with the original Graph alert,
so an operator can fix the cause and replay it. Writes are fsynced before the pipeline moves on.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import orjson

from agent.durable import write_all
from agent.errors import StateError
from agent.model import Alert


class DeadLetterFile:
    """Appends rejected alerts with the sink and the reason."""

    def __init__(self, path: Path, now: Callable[[], str]) -> None:
        self.path = path
        self._now = now
        self._lock = asyncio.Lock()

    def _append(self, data: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            write_all(fd, data)
        finally:
            os.close(fd)

    async def write(self, sink: str, reason: str, alerts: Sequence[Alert]) -> None:
        """Record ``alerts``; raises ``StateError`` if the file cannot be written (nothing is dropped)."""
        now = self._now()
        lines = []
        for alert in alerts:
            record = {"time": now, "sink": sink, "reason": reason[:2000], "alert": alert}
            try:
                lines.append(orjson.dumps(record, default=str) + b"\n")
            except TypeError:
                # What orjson refuses (64-bit overflow, lone surrogates) the stdlib writes with escapes.
                lines.append(json.dumps(record, default=str, ensure_ascii=True).encode() + b"\n")
        async with self._lock:
            try:
                await asyncio.to_thread(self._append, b"".join(lines))
            except OSError as exc:
                raise StateError(f"cannot write dead-letter file {self.path}: {exc.strerror}") from None
