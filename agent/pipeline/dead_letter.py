"""Dead-letter file: events a receiver rejected permanently, one JSON object per line.

Each line is ``{"time": …, "sink": …, "reason": …, "alert": {…}}`` with the original Graph alert,
so an operator can fix the cause and replay it; items a source refused (no usable id or timestamp)
carry ``"source": <stream>`` instead of ``"sink"``. Writes are fsynced before the pipeline moves on.
An alert nested too deeply for any JSON writer is recorded cut at ``agent.nesting.MAX_DEPTH`` levels,
and the reason says so.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from agent.durable import write_all
from agent.errors import StateError
from agent.model import Alert
from agent.nesting import MAX_DEPTH, cut_depth


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

    async def write(self, name: str, reason: str, alerts: Sequence[Alert], *, role: str = "sink") -> None:
        """Record ``alerts`` as refused by ``name`` (a sink, or with ``role="source"`` a stream); raises
        ``StateError`` if the file cannot be written (nothing is dropped)."""
        await self.write_each(name, [(a, reason) for a in alerts], role=role)

    async def write_each(
        self, name: str, refused: Sequence[tuple[Alert, str]], *, role: str = "sink"
    ) -> None:
        """Record each ``(alert, reason)`` of ``refused`` in one append and one fsync (a 500-item
        bulk refused item by item is one write, not 500); raises ``StateError`` like ``write``."""
        if not refused:
            return
        now = self._now()
        lines = [_line({"time": now, role: name, "reason": r[:2000], "alert": a}) for a, r in refused]
        async with self._lock:
            try:
                await asyncio.to_thread(self._append, b"".join(lines))
            except OSError as exc:
                raise StateError(f"cannot write dead-letter file {self.path}: {exc.strerror}") from None


def _line(record: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(record, default=str) + b"\n"
    except TypeError:
        pass
    try:
        # What orjson refuses (64-bit overflow, lone surrogates, over 254 levels) the stdlib writes.
        return json.dumps(record, default=str, ensure_ascii=True).encode() + b"\n"
    except (RecursionError, ValueError):
        alert, _ = cut_depth(record["alert"])
        reason = f"{record['reason']} (alert cut at {MAX_DEPTH} levels: nested too deeply to write)"
        return json.dumps({**record, "alert": alert, "reason": reason}, default=str).encode() + b"\n"
