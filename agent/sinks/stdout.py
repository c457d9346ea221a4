"""Standard output sink: one message per line, flushed per batch."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from typing import BinaryIO

from agent.codecs import build_framer
from agent.errors import TransientSinkError
from agent.model import Event
from agent.sinks.base import SendResult, SinkContext
from agent.sinks.config import StdoutSinkConfig


class StdoutSink:
    """Writes each event's payload and a LF to stdout. Delivery means the write and flush succeeded."""

    def __init__(self, config: StdoutSinkConfig, ctx: SinkContext, stream: BinaryIO | None = None) -> None:
        self.name = config.name
        self._stream = stream if stream is not None else sys.stdout.buffer
        self._framer = build_framer("newline")

    async def start(self) -> None:
        return None

    async def healthcheck(self) -> str:
        """Nothing to contact: standard output is always there (a closed pipe shows on the first write)."""
        return "standard output"

    async def send(self, events: Sequence[Event]) -> SendResult:
        data = b"".join([self._framer.frame(e.payload) for e in events])
        try:
            # In a worker thread: a slow reader on the other end of a pipe must not stall the event loop.
            await asyncio.to_thread(self._write, data)
        except (OSError, ValueError) as exc:
            raise TransientSinkError(f"stdout write failed: {exc}") from None
        return SendResult()

    def _write(self, data: bytes) -> None:
        self._stream.write(data)
        self._stream.flush()

    async def aclose(self) -> None:
        return None
