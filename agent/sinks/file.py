"""File sink: appends one message per line; reopened on SIGHUP so logrotate works."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path

from agent.errors import TransientSinkError
from agent.model import Event
from agent.sinks.base import SendResult, SinkContext
from agent.sinks.config import FileSinkConfig


class FileSink:
    """Appends payload + LF per event; with ``fsync`` a batch is acknowledged only once it is on disk."""

    def __init__(self, config: FileSinkConfig, ctx: SinkContext) -> None:
        self.name = config.name
        self._path = Path(config.path)
        self._fsync = config.fsync
        self._fd: int | None = None
        self._reopen = False

    def _open(self) -> int:
        if self._fd is None or self._reopen:
            self._close()
            self._reopen = False
            self._fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        return self._fd

    def _close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def _write(self, data: bytes) -> None:
        fd = self._open()
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        if self._fsync:
            os.fsync(fd)

    async def start(self) -> None:
        try:
            self._open()
        except OSError as exc:
            raise TransientSinkError(f"cannot open {self._path}: {exc.strerror}") from None

    async def send(self, events: Sequence[Event]) -> SendResult:
        data = b"".join(e.payload + b"\n" for e in events)
        try:
            await asyncio.to_thread(self._write, data)
        except OSError as exc:
            # A partial write may have reached the file: the retry re-sends the batch (at-least-once).
            self._reopen = True
            raise TransientSinkError(f"write to {self._path} failed: {exc.strerror}") from None
        return SendResult()

    async def aclose(self) -> None:
        self._close()

    def reopen(self) -> None:
        self._reopen = True
