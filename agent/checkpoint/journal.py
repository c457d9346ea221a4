"""The journal: one line per acknowledged commit, appended and fsynced, replayed after the snapshot.

A record is ``<crc32 of the JSON, 8 hex digits> <JSON>\\n`` with the JSON
``{"n": <record number>, "s": <stream>, "seen": {id: time}, "c": <cursor>|null, "p": <prune_before>|null}``
— what one ``Commit`` says, so appending costs what the batch holds, not what the state holds.
Record numbers increase by one per record across journals; the snapshot names the last one it
contains, so replay skips what the snapshot already has.

Reading tolerates a torn tail: records the last write did not finish (a crash mid-append leaves a line
without its newline, or, on some file systems, zeros or a line whose checksum fails). Anything bad
*followed by* a good record is not a torn tail but damage, and raises ``StateError`` naming the file.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from agent.checkpoint.snapshot import HINT
from agent.checkpoint.state import is_timestamp
from agent.durable import sync_directory, write_all
from agent.errors import StateError
from agent.model import Commit


@dataclass(frozen=True, slots=True)
class Record:
    """One journal record: the ``n``-th commit, of ``stream``."""

    n: int
    stream: str
    commit: Commit


def encode_record(n: int, stream: str, commit: Commit) -> bytes:
    """One journal line for ``commit``, newline included."""
    body = orjson.dumps(
        {"n": n, "s": stream, "seen": commit.seen, "c": commit.cursor, "p": commit.prune_before}
    )
    return b"%08x " % zlib.crc32(body) + body + b"\n"


def _decode(line: bytes) -> Record | None:
    """The record on ``line`` (without its newline), ``None`` if the line is not a whole valid record."""
    if len(line) < 10 or line[8:9] != b" ":
        return None
    body = line[9:]
    try:
        if int(line[:8], 16) != zlib.crc32(body):
            return None
        doc = orjson.loads(body)
    except (ValueError, orjson.JSONDecodeError):
        return None
    if not isinstance(doc, dict):
        return None
    n, stream, seen, cursor, prune = doc.get("n"), doc.get("s"), doc.get("seen"), doc.get("c"), doc.get("p")
    valid = (
        isinstance(n, int)
        and isinstance(stream, str)
        and isinstance(seen, dict)
        and all(isinstance(k, str) and is_timestamp(v) for k, v in seen.items())
        and (cursor is None or is_timestamp(cursor))
        and (prune is None or is_timestamp(prune))
    )
    if not valid:
        return None
    return Record(int(n), str(stream), Commit(seen=dict(seen), cursor=cursor, prune_before=prune))  # type: ignore[arg-type]


@dataclass(slots=True)
class JournalRead:
    """What one journal file holds: its valid records and whether a torn tail was left out."""

    records: list[Record]
    torn: bool = False


def read_journal(path: Path) -> JournalRead | None:
    """Every record of the journal at ``path`` (``None`` if absent). Raises ``StateError`` naming it."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(f"cannot read checkpoint journal {path}: {exc.strerror}") from None
    lines = raw.split(b"\n")
    tail = lines.pop()  # after the last newline: empty unless the last append was torn
    out = JournalRead([], torn=bool(tail))
    bad: int | None = None
    for number, line in enumerate(lines, start=1):
        record = _decode(line)
        if record is None:
            bad = number if bad is None else bad
            continue
        if bad is not None:
            raise StateError(f"checkpoint journal {path} is corrupt at line {bad} (damaged record); {HINT}")
        if out.records and record.n != out.records[-1].n + 1:
            raise StateError(
                f"checkpoint journal {path} is corrupt at line {number} (record {record.n} follows "
                f"{out.records[-1].n}); {HINT}"
            )
        out.records.append(record)
    out.torn = out.torn or bad is not None
    return out


def replay(records: Iterator[Record] | list[Record], after: int) -> Iterator[Record]:
    """The records numbered above ``after`` (what a snapshot with ``lsn = after`` lacks)."""
    return (r for r in records if r.n > after)


class JournalWriter:
    """Appends records to one journal file (created on the first append, mode 0600).

    The file is opened for each append and closed after its fsync: a state directory that turned
    read-only or vanished fails the next append (and stops the agent) instead of going on writing
    through an old descriptor, and nothing is held open between batches.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        #: Bytes in the file as of the last append (0 before the first).
        self.size = 0

    def append(self, data: bytes) -> None:
        """Write ``data`` and fsync it. Raises ``StateError``; a torn tail may be left behind."""
        try:
            created = not self.path.exists()
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                if created:
                    os.fchmod(fd, 0o600)
                    sync_directory(self.path.parent)  # the new name must survive a crash with the records
                write_all(fd, data)
                self.size = os.fstat(fd).st_size
            finally:
                os.close(fd)
        except OSError as exc:
            raise StateError(f"cannot write checkpoint journal {self.path}: {exc.strerror}") from None
