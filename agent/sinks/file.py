"""File sink: appends one message per line; reopened on SIGHUP so logrotate works.

A crash (or a failed write, e.g. a full disk) in the middle of a batch can leave the file ending
in part of a line. That record was never acknowledged and will be written again, so when the file
is opened the torn tail is cut back to the last complete line: readers never see two records glued
into one corrupt line.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from agent.codecs import build_framer
from agent.durable import write_all
from agent.errors import TransientSinkError
from agent.model import Event
from agent.sinks.base import SendResult, SinkContext
from agent.sinks.config import FileSinkConfig

log = logging.getLogger(__name__)

#: How far back to look for the last line end of a torn file (messages are capped well below this).
TAIL_SCAN_BYTES = 4 * 1024 * 1024


class FileSink:
    """Appends each event newline-framed; with ``fsync`` a batch is acknowledged only once it is on disk."""

    def __init__(self, config: FileSinkConfig, ctx: SinkContext) -> None:
        self.name = config.name
        self._framer = build_framer("newline")
        self._path = Path(config.path)
        self._fsync = config.fsync
        self._fd: int | None = None
        self._reopen = False

    def _open(self) -> int:
        if self._fd is None or self._reopen:
            self._close()
            self._reopen = False
            fd = os.open(self._path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
            try:
                self._repair_tail(fd)
            except OSError:
                os.close(fd)
                raise
            self._fd = fd
        return self._fd

    def _repair_tail(self, fd: int) -> None:
        """Cut a partial last line (an unacknowledged record cut short) back to the last line end."""
        size = os.fstat(fd).st_size
        if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
            return
        start = max(0, size - TAIL_SCAN_BYTES)
        cut = os.pread(fd, size - start, start).rfind(b"\n")
        if cut == -1 and start > 0:
            os.write(fd, b"\n")  # no line end in reach: keep the bytes, but start a fresh line
            log.warning("File ended mid-line; started a new line.", extra={"sink": self.name})
            return
        keep = 0 if cut == -1 else start + cut + 1
        os.ftruncate(fd, keep)
        log.warning(
            "Removed a partial last line left by an interrupted write; it is written again.",
            extra={"sink": self.name, "path": str(self._path), "bytes_removed": size - keep},
        )

    def _close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def _write(self, data: bytes) -> None:
        write_all(self._open(), data, fsync=self._fsync)

    async def start(self) -> None:
        try:
            self._open()
        except OSError as exc:
            raise TransientSinkError(f"cannot open {self._path}: {exc.strerror}") from None

    async def healthcheck(self) -> str:
        """The file, or the directory it would be created in, is writable (nothing is created)."""
        await asyncio.to_thread(self._check_writable)
        return f"{self._path} writable"

    def _check_writable(self) -> None:
        try:
            self._check_writable_path()
        except OSError as exc:
            # Path.exists/is_dir (3.11) re-raise EACCES, ENAMETOOLONG, EIO...: a sink error, not a crash.
            reason = exc.strerror or type(exc).__name__
            raise TransientSinkError(f"cannot check {self._path} is writable: {reason}") from None

    def _check_writable_path(self) -> None:
        path = self._path
        if path.exists():
            if not path.is_file() or not os.access(path, os.W_OK):
                raise TransientSinkError(f"{path} is not a writable file")
            return
        directory = path.parent
        if not directory.is_dir():
            raise TransientSinkError(f"directory {directory} does not exist")
        if not os.access(directory, os.W_OK | os.X_OK):
            raise TransientSinkError(f"directory {directory} is not writable")

    async def send(self, events: Sequence[Event]) -> SendResult:
        data = b"".join([self._framer.frame(e.payload) for e in events])
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
