"""Checkpoint store: atomic versioned document, clear errors, never a silent reset."""

from __future__ import annotations

import os
import resource
import signal
import stat
from pathlib import Path

import orjson
import pytest

from agent.checkpoint import CheckpointStore
from agent.errors import StateError
from agent.model import Commit

NOW = "2026-11-27T10:00:00.0000000Z"


def store(tmp_path: Path) -> CheckpointStore:
    return CheckpointStore(tmp_path, "agent", lambda: NOW)


class TestCheckpointStore:
    def test_missing_file_is_empty(self, tmp_path: Path) -> None:
        """No file yet: an empty checkpoint, not an error."""
        assert store(tmp_path).load() == {}

    def test_roundtrip_keeps_seventh_digit_and_mode_0600(self, tmp_path: Path) -> None:
        """Raw 7-digit cursors survive a save/load, and the file is private."""
        s = store(tmp_path)
        s.apply("t/alerts_v2/all", Commit(seen={"a": "2026-11-27T09:59:59.1234567Z"}))
        s.apply("t/alerts_v2/all", Commit(cursor="2026-11-27T09:59:59.1234567Z"))
        s.save()
        assert stat.S_IMODE(os.stat(s.path).st_mode) == 0o600
        loaded = store(tmp_path).load()
        assert loaded["t/alerts_v2/all"].cursor == "2026-11-27T09:59:59.1234567Z"
        assert loaded["t/alerts_v2/all"].seen == {"a": "2026-11-27T09:59:59.1234567Z"}
        doc = orjson.loads(s.path.read_bytes())
        assert doc["version"] == 1 and doc["agent"] == "agent"

    def test_cursor_never_moves_backwards_and_prunes(self, tmp_path: Path) -> None:
        """An older cursor is ignored; seen entries older than prune_before are dropped."""
        s = store(tmp_path)
        s.apply(
            "s", Commit(seen={"old": "2026-11-27T08:00:00.0000000Z", "new": "2026-11-27T09:30:00.0000000Z"})
        )
        s.apply(
            "s", Commit(cursor="2026-11-27T09:30:00.0000000Z", prune_before="2026-11-27T09:00:00.0000000Z")
        )
        s.apply("s", Commit(cursor="2026-11-27T09:00:00.0000000Z"))
        assert s.streams["s"].cursor == "2026-11-27T09:30:00.0000000Z"
        assert s.streams["s"].seen == {"new": "2026-11-27T09:30:00.0000000Z"}

    @pytest.mark.parametrize(
        "content",
        [
            b"{not json",
            b"[]",
            b'{"version": 99, "streams": {}}',
            b'{"version": 1, "streams": {"s": {"cursor": 5}}}',
        ],
    )
    def test_corrupt_file_is_a_clear_error_naming_the_file(self, tmp_path: Path, content: bytes) -> None:
        """A corrupt document raises StateError naming the path and the escape hatch; the file stays."""
        s = store(tmp_path)
        s.path.write_bytes(content)
        with pytest.raises(StateError) as err:
            s.load()
        assert str(s.path) in str(err.value)
        assert "--reset-checkpoint" in str(err.value)
        assert s.path.read_bytes() == content

    def test_failed_write_keeps_old_document(self, tmp_path: Path) -> None:
        """A write that fails (file-size limit, as on a full disk) leaves the old checkpoint intact."""
        s = store(tmp_path)
        s.apply("s", Commit(cursor="2026-11-27T09:00:00.0000000Z"))
        s.save()
        before = s.path.read_bytes()
        s.apply("s", Commit(seen={f"id{i}": "2026-11-27T09:30:00.0000000Z" for i in range(100)}))
        old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (len(before) + 10, hard))
        try:
            with pytest.raises(StateError) as err:
                s.save()
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
            signal.signal(signal.SIGXFSZ, old_handler)
        assert "cannot write checkpoint" in str(err.value)
        assert s.path.read_bytes() == before
        assert [p.name for p in tmp_path.iterdir()] == [s.path.name]  # no temp file left behind

    def test_reset_moves_file_aside(self, tmp_path: Path) -> None:
        """The escape hatch keeps the old document for forensics and starts empty."""
        s = store(tmp_path)
        s.path.write_bytes(b"garbage")
        moved = s.reset()
        assert moved is not None and moved.read_bytes() == b"garbage"
        assert s.load() == {}
