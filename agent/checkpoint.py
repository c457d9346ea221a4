"""The on-disk checkpoint: one versioned JSON document per agent, written atomically.

Document (version 1)::

    {"version": 1, "agent": "siem-agent", "written_at": "2026-11-27T10:00:00.0000000Z",
     "streams": {"<stream id>": {"cursor": "<raw lastUpdateDateTime>" | null,
                                 "seen": {"<alert id>": "<lastUpdateDateTime forwarded>", ...}}}}

It only ever holds acknowledged progress (see ``agent.pipeline.acks``). A write goes to a temporary
file in the same directory, is fsynced, renamed over the old file, and the directory is fsynced, so
a crash leaves either the old or the new document, never a torn one. A document that cannot be read
or parsed stops the agent with an error naming the file; it is never silently reset.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from agent.durable import write_all
from agent.errors import StateError
from agent.model import Commit
from agent.timestamps import sort_key

VERSION = 1


@dataclass(slots=True)
class StreamState:
    """Acknowledged progress of one stream."""

    cursor: str | None = None
    seen: dict[str, str] = field(default_factory=dict)


class CheckpointStore:
    """Loads, updates (in memory) and atomically saves the checkpoint document."""

    def __init__(self, state_dir: Path, agent: str, now: Callable[[], str]) -> None:
        self.path = state_dir / f"{agent}.checkpoint.json"
        self.agent = agent
        self._now = now
        self.streams: dict[str, StreamState] = {}
        self.dirty = False

    def load(self) -> dict[str, StreamState]:
        """Read the document; a missing file is an empty checkpoint. Raises ``StateError``."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            self.streams = {}
            return self.streams
        except OSError as exc:
            raise StateError(f"cannot read checkpoint {self.path}: {exc.strerror}") from None
        self.streams = self._parse(raw)
        return self.streams

    def _parse(self, raw: bytes) -> dict[str, StreamState]:
        hint = "fix or move it, or start once with --reset-checkpoint"
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise StateError(f"checkpoint {self.path} is corrupt (invalid JSON: {exc}); {hint}") from None
        if (
            not isinstance(doc, dict)
            or doc.get("version") != VERSION
            or not isinstance(doc.get("streams"), dict)
        ):
            raise StateError(f"checkpoint {self.path} is not a version-{VERSION} checkpoint document; {hint}")
        streams: dict[str, StreamState] = {}
        for name, body in doc["streams"].items():
            cursor = body.get("cursor") if isinstance(body, dict) else None
            seen = body.get("seen") if isinstance(body, dict) else None
            valid = (
                (cursor is None or _is_ts(cursor))
                and isinstance(seen, dict)
                and all(isinstance(k, str) and _is_ts(v) for k, v in seen.items())
            )
            if not valid:
                raise StateError(f"checkpoint {self.path}: stream {name!r} is malformed; {hint}")
            assert isinstance(seen, dict)
            streams[name] = StreamState(cursor, dict(seen))
        return streams

    def apply(self, stream: str, commit: Commit) -> None:
        """Record delivered progress in memory (``save`` persists it)."""
        state = self.streams.setdefault(stream, StreamState())
        state.seen.update(commit.seen)
        if commit.cursor is not None:
            if state.cursor is None or sort_key(commit.cursor) > sort_key(state.cursor):
                state.cursor = commit.cursor
            if commit.prune_before is not None:
                horizon = sort_key(commit.prune_before)
                state.seen = {k: v for k, v in state.seen.items() if sort_key(v) >= horizon}
        self.dirty = True

    def document(self) -> dict[str, Any]:
        """The document as it would be written now."""
        return {
            "version": VERSION,
            "agent": self.agent,
            "written_at": self._now(),
            "streams": {n: {"cursor": s.cursor, "seen": s.seen} for n, s in sorted(self.streams.items())},
        }

    def save(self) -> None:
        """Write the document atomically with mode 0600. Raises ``StateError``; the old file stays intact."""
        data = orjson.dumps(self.document(), option=orjson.OPT_INDENT_2)
        directory = self.path.parent
        tmp_name: str | None = None
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp_name = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=directory)
            try:
                os.fchmod(fd, 0o600)
                write_all(fd, data)
            finally:
                os.close(fd)
            os.replace(tmp_name, self.path)
            tmp_name = None
            dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise StateError(f"cannot write checkpoint {self.path}: {exc.strerror}") from None
        finally:
            if tmp_name is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp_name)
        self.dirty = False

    def reset(self) -> Path | None:
        """Move the existing document aside (``<name>.reset-<time>``); return where, or ``None`` if absent."""
        if not self.path.exists():
            return None
        stamp = self._now().replace(":", "").replace("-", "")
        target = self.path.with_name(f"{self.path.name}.reset-{stamp}")
        try:
            os.replace(self.path, target)
        except OSError as exc:
            raise StateError(f"cannot move checkpoint {self.path} aside: {exc.strerror}") from None
        self.streams = {}
        return target


def _is_ts(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        sort_key(value)
    except ValueError:
        return False
    return True
