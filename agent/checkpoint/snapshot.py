"""The snapshot: one versioned JSON document with every stream's state, written atomically.

Document (version 1)::

    {"version": 1, "agent": "siem-agent", "written_at": "2026-11-27T10:00:00.0000000Z", "lsn": 42,
     "streams": {"<stream id>": {"cursor": "<raw lastUpdateDateTime>" | null,
                                 "seen": {"<alert id>": "<lastUpdateDateTime forwarded>", ...}}}}

``lsn`` is the number of the last journal record the snapshot contains (absent in documents written
before the journal existed: 0). A write goes to a temporary file in the same directory, is fsynced,
renamed over the old file, and the directory is fsynced, so a crash leaves either the old or the new
document, never a torn one; the file has mode 0600.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import orjson

from agent.checkpoint.state import StreamState, is_timestamp
from agent.durable import replace_atomically
from agent.errors import StateError

VERSION = 1
HINT = "fix or move it, or start once with --reset-checkpoint"


@dataclass(slots=True)
class Snapshot:
    """A snapshot as read: the streams and the last journal record it includes."""

    streams: dict[str, StreamState]
    lsn: int = 0


def read_snapshot(path: Path) -> Snapshot | None:
    """The snapshot at ``path``, ``None`` if there is none. Raises ``StateError`` naming the file."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(f"cannot read checkpoint {path}: {exc.strerror}") from None
    return parse_snapshot(path, raw)


def parse_snapshot(path: Path, raw: bytes) -> Snapshot:
    """Validate a snapshot document. Raises ``StateError`` naming ``path``."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise StateError(f"checkpoint {path} is corrupt (invalid JSON: {exc}); {HINT}") from None
    lsn = doc.get("lsn", 0) if isinstance(doc, dict) else None
    if (
        not isinstance(doc, dict)
        or doc.get("version") != VERSION
        or not isinstance(doc.get("streams"), dict)
        or not isinstance(lsn, int)
        or isinstance(lsn, bool)
        or lsn < 0
    ):
        raise StateError(f"checkpoint {path} is not a version-{VERSION} checkpoint document; {HINT}")
    streams: dict[str, StreamState] = {}
    for name, body in doc["streams"].items():
        cursor = body.get("cursor") if isinstance(body, dict) else None
        seen = body.get("seen") if isinstance(body, dict) else None
        valid = (
            (cursor is None or is_timestamp(cursor))
            and isinstance(seen, dict)
            and all(isinstance(k, str) and is_timestamp(v) for k, v in seen.items())
        )
        if not valid:
            raise StateError(f"checkpoint {path}: stream {name!r} is malformed; {HINT}")
        assert isinstance(seen, dict)
        streams[name] = StreamState(cursor, dict(seen))
    return Snapshot(streams, lsn)


def render_snapshot(streams: Mapping[str, StreamState], agent: str, written_at: str, lsn: int) -> bytes:
    """The document's bytes (compact JSON: the snapshot of 200,000 keys is rewritten in the background)."""
    doc = {
        "version": VERSION,
        "agent": agent,
        "written_at": written_at,
        "lsn": lsn,
        "streams": {n: {"cursor": s.cursor, "seen": s.seen} for n, s in sorted(streams.items())},
    }
    return orjson.dumps(doc)


def write_snapshot(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` atomically, mode 0600.

    Raises ``StateError``; the old file then stays intact.
    """
    try:
        replace_atomically(path, data)
    except OSError as exc:
        raise StateError(f"cannot write checkpoint {path}: {exc.strerror}") from None
