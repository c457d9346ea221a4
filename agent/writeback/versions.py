"""The alert and incident versions the agent's own writes produced (loop control).

Graph answers an update with the entity, including its new ``lastUpdateDateTime``; that version is
the one the next poll lists. Each is recorded here as ``(source, entity, id, lastUpdateDateTime)``
with the request id and who asked, so the poller's output can mark it as agent-originated or hold it
back (``agent.writeback.loop``). Writes come from the running agent (the API's worker) and from
``siem-agent alerts update`` in another process, so the record is a shared file,
``<state_dir>/<name>.writeback-versions.jsonl`` (0600): every writer appends one line under an
exclusive ``flock`` and fsyncs; the agent reads what others appended when the file grew
(``refresh``: one ``stat`` per batch). Entries older than the retention are dropped when the agent
rewrites the file (at startup, and when the lines read since the last rewrite exceed twice what that
rewrite kept, plus 1000).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson

from agent.clock import Clock
from agent.durable import replace_atomically, write_all
from agent.errors import StateError
from agent.timestamps import format_dt, sort_key


@dataclass(frozen=True, slots=True)
class OwnWrite:
    """Which request produced a version, and for whom."""

    request_id: str
    by: str
    at: str


def versions_path(state_dir: Path, name: str) -> Path:
    return state_dir / f"{name}.writeback-versions.jsonl"


class OwnVersions:
    """The shared file and what it says, in memory."""

    def __init__(self, path: Path, clock: Clock, retention_secs: float) -> None:
        self.path = path
        self._clock = clock
        self._retention = retention_secs
        self._known: dict[tuple[str, str, str, str], OwnWrite] = {}
        self._scopes: set[tuple[str, str]] = set()
        self._offset = 0
        self._inode: int | None = None
        self._lines = 0
        #: Entries the last rewrite kept (what the file then held).
        self._compacted_size = 0

    # -- reading ---------------------------------------------------------------------------

    def refresh(self) -> None:
        """Read what was appended since the last look (cheap when nothing changed)."""
        with contextlib.suppress(OSError):  # unreadable state dir: nothing to mark, never a reason to stop
            self._read_tail()

    def _read_tail(self) -> None:
        """``refresh``, raising ``OSError`` (other than a missing file)."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return
        if st.st_ino != self._inode or st.st_size < self._offset:
            self._offset, self._inode, self._lines = 0, st.st_ino, 0
        if st.st_size == self._offset:
            return
        with self.path.open("rb") as fh:
            fh.seek(self._offset)
            data = fh.read(st.st_size - self._offset)
        end = data.rfind(b"\n") + 1  # a line still being written is read next time
        for line in data[:end].split(b"\n"):
            self._take(line)
        self._offset += end

    def _take(self, line: bytes) -> None:
        if not line.strip():
            return
        self._lines += 1
        try:
            rec = orjson.loads(line)
            key = _key(rec["source"], rec["entity"], rec["id"], rec["version"])
            self._known[key] = OwnWrite(str(rec["request"]), str(rec["by"]), str(rec["at"]))
            self._scopes.add(key[:2])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return  # a damaged line only loses a mark

    def knows(self, source: str, entity: str) -> bool:
        """Whether any version of this source's alerts (or incidents) is remembered (a cheap pre-check)."""
        return (source, entity) in self._scopes

    def lookup(self, source: str, entity: str, target: str, version: str) -> OwnWrite | None:
        """The write that produced this version, if it was one of ours."""
        try:
            return self._known.get(_key(source, entity, target, version))
        except ValueError:
            return None

    # -- writing ---------------------------------------------------------------------------

    def add(self, source: str, entity: str, target: str, version: str, request_id: str, by: str) -> None:
        """Record a version our write produced (appended durably). Raises ``StateError``."""
        rec = {
            "source": source,
            "entity": entity,
            "id": target,
            "version": version,
            "request": request_id,
            "by": by,
            "at": format_dt(self._clock.now()),
        }
        line = orjson.dumps(rec) + b"\n"
        with self._locked() as fd:
            write_all(fd, line)
        self._take(line)

    def compact(self) -> None:
        """Rewrite the file with the entries still within the retention (the agent, at startup).

        The tail is read and the file replaced under the writers' flock, so a line another process
        appends meanwhile waits for the lock and lands in the new file instead of being erased.
        No file yet: nothing to do (an agent that never wrote back creates none).
        """
        if not self.path.exists():
            return
        with self._locked():
            try:
                self._read_tail()  # under the lock: nothing can be appended between this and the replace
            except OSError as exc:
                raise StateError(f"cannot read {self.path}: {exc.strerror}") from None
            horizon = sort_key(format_dt(self._clock.now() - timedelta(seconds=self._retention)))
            keep = {k: w for k, w in self._known.items() if _sortable(w.at) >= horizon}
            try:
                replace_atomically(self.path, b"".join(_line(k, w) for k, w in keep.items()))
            except OSError as exc:
                raise StateError(f"cannot rewrite {self.path}: {exc.strerror}") from None
        self._known = keep
        self._compacted_size = len(keep)
        self._scopes = {k[:2] for k in keep}
        self._offset, self._inode, self._lines = 0, None, 0
        self.refresh()

    def maybe_compact(self) -> None:
        """Compact when the file holds more than twice the lines the last rewrite left (plus 1000)."""
        if self._lines > 2 * self._compacted_size + 1000:
            self.compact()

    @contextlib.contextmanager
    def _locked(self) -> Any:
        """An append descriptor on the *current* file, under an exclusive flock.

        ``flock`` (not POSIX record locks, cf. ``agent.sourcelock``): it belongs to this descriptor's
        open file, so ``refresh`` opening and closing the file meanwhile does not drop it.
        """
        for _ in range(100):
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as exc:
                raise StateError(f"cannot open {self.path}: {exc.strerror}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                if os.fstat(fd).st_ino != os.stat(self.path).st_ino:
                    continue  # replaced while we waited for the lock: lock the new file instead
                try:
                    yield fd
                except OSError as exc:
                    raise StateError(f"cannot write {self.path}: {exc.strerror}") from None
                return
            finally:
                os.close(fd)  # closing releases the flock
        raise StateError(f"{self.path} keeps being replaced")  # pragma: no cover


def _key(source: Any, entity: Any, target: Any, version: Any) -> tuple[str, str, str, str]:
    if not all(isinstance(v, str) for v in (source, entity, target, version)):
        raise ValueError("not a version record")
    return (source, entity, target, sort_key(version))


def _sortable(ts: str) -> str:
    try:
        return sort_key(ts)
    except ValueError:
        return ""


def _line(key: tuple[str, str, str, str], write: OwnWrite) -> bytes:
    source, entity, target, version = key
    rec = {
        "source": source,
        "entity": entity,
        "id": target,
        "version": version,
        "request": write.request_id,
        "by": write.by,
        "at": write.at,
    }
    return orjson.dumps(rec) + b"\n"
