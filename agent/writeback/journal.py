"""An append-only journal of JSON records: fsync'd, mode 0600, torn tail ignored, compacted.

One JSON object per line. ``append`` writes the whole line with one ``write`` loop and ``fsync``s
before it returns, so a record that was acknowledged survives a crash or power loss. A crash in the
middle of an append leaves at most an incomplete last line: ``load`` ignores invalid lines at the
very end of the file and cuts them off, so the next append starts on a fresh line. An invalid line
*followed by* valid ones cannot come from a torn append; it means the file was damaged, and ``load``
raises ``StateError`` naming the file instead of guessing.

``compact`` replaces the file by a shorter one holding the given records (written to a temporary
file, fsync'd, renamed over the journal, directory fsync'd): a crash leaves the old or the new
journal, never a mix.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from agent.durable import replace_atomically, write_all
from agent.errors import StateError


class Journal:
    """One journal file. ``load`` first, then ``append``/``compact``; ``close`` at the end."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        #: Records appended since the last compaction (or load).
        self.appended = 0

    def load(self) -> list[dict[str, Any]]:
        """Every complete record in order; cuts off a torn tail. Raises ``StateError``."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            raw = self.path.read_bytes()
        except FileNotFoundError:
            raw = b""
        except OSError as exc:
            raise StateError(f"cannot read {self.path}: {exc.strerror}") from None
        records: list[dict[str, Any]] = []
        good_end = 0
        bad_line: int | None = None
        offset = 0
        for n, line in enumerate(raw.split(b"\n"), 1):
            end = offset + len(line) + 1
            complete = end <= len(raw)
            offset = end
            if not line.strip():
                if complete:
                    good_end = end if bad_line is None else good_end
                continue
            doc = _parse(line) if complete else None
            if doc is None:
                bad_line = bad_line or n
                continue
            if bad_line is not None:
                raise StateError(
                    f"{self.path} is damaged at line {bad_line} (not a torn last record); "
                    "move it aside to start with an empty write-back queue"
                )
            records.append(doc)
            good_end = end
        if good_end < len(raw):
            self._truncate(good_end)
        self.appended = 0
        return records

    def _truncate(self, size: int) -> None:
        try:
            with self.path.open("r+b") as fh:
                fh.truncate(size)
                os.fsync(fh.fileno())
        except OSError as exc:
            raise StateError(f"cannot repair the torn end of {self.path}: {exc.strerror}") from None

    def _open(self) -> int:
        if self._fd is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
                os.fchmod(fd, 0o600)
            except OSError as exc:
                raise StateError(f"cannot open {self.path}: {exc.strerror}") from None
            self._fd = fd
        return self._fd

    def append(self, record: dict[str, Any]) -> None:
        """Write one record durably (fsync) before returning. Raises ``StateError``."""
        line = orjson.dumps(record) + b"\n"
        try:
            write_all(self._open(), line)
        except OSError as exc:
            raise StateError(f"cannot write {self.path}: {exc.strerror}") from None
        self.appended += 1

    def compact(self, records: Iterable[dict[str, Any]]) -> None:
        """Atomically replace the journal by ``records``. Raises ``StateError``; the old file stays."""
        data = b"".join(orjson.dumps(r) + b"\n" for r in records)
        self.close()  # the next append reopens the new file
        try:
            replace_atomically(self.path, data)
        except OSError as exc:
            raise StateError(f"cannot compact {self.path}: {exc.strerror}") from None
        self.appended = 0

    def close(self) -> None:
        """Close the append descriptor (idempotent; the next append reopens)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return doc if isinstance(doc, dict) else None
