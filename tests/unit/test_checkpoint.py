"""Checkpoint store: snapshot plus journal, per-batch cost, torn tails, compaction, clear errors."""

from __future__ import annotations

import os
import resource
import signal
import stat
from pathlib import Path

import orjson
import pytest

from agent.checkpoint import CheckpointStore
from agent.clock import SystemClock
from agent.commands.checkpoints import reset as reset_checkpoints
from agent.errors import StateError
from agent.model import Commit

NOW = "2026-11-27T10:00:00.0000000Z"
TS = "2026-11-27T09:59:59.1234567Z"
S = "t/alerts_v2/all"


def store(tmp_path: Path, **kw: int) -> CheckpointStore:
    return CheckpointStore(tmp_path, "agent", lambda: NOW, **kw)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


class TestRoundTrip:
    def test_missing_files_are_an_empty_checkpoint(self, tmp_path: Path) -> None:
        """No file yet: an empty checkpoint, not an error."""
        assert store(tmp_path).load() == {}
        assert store(tmp_path).open() == {}

    def test_journal_then_snapshot_keep_seventh_digit_and_mode_0600(self, tmp_path: Path) -> None:
        """``open`` writes an empty snapshot; a save appends to the journal (0600); a fresh store reads
        it back; close folds it into the
        snapshot (0600, version 1, with the last record number) and removes the journal."""
        s = store(tmp_path)
        s.open()
        s.apply(S, Commit(seen={"a": TS}))
        s.apply(S, Commit(cursor=TS))
        s.save()
        assert orjson.loads(s.path.read_bytes())["streams"] == {}  # open wrote the first snapshot
        assert mode(s.files.journal) == 0o600
        loaded = store(tmp_path).load()
        assert loaded[S].cursor == TS and loaded[S].seen == {"a": TS}
        s.close()
        assert not s.files.journal.exists() and mode(s.path) == 0o600
        doc = orjson.loads(s.path.read_bytes())
        assert doc["version"] == 1 and doc["agent"] == "agent" and doc["lsn"] == 2
        again = store(tmp_path)
        assert again.load()[S].seen == {"a": TS} and again.lsn == 2

    def test_cursor_never_moves_backwards_and_prunes(self, tmp_path: Path) -> None:
        """An older cursor is ignored; seen entries older than prune_before are dropped, also on replay."""
        s = store(tmp_path)
        s.apply(
            S, Commit(seen={"old": "2026-11-27T08:00:00.0000000Z", "new": "2026-11-27T09:30:00.0000000Z"})
        )
        s.apply(S, Commit(cursor="2026-11-27T09:30:00.0000000Z", prune_before="2026-11-27T09:00:00.0000000Z"))
        s.apply(S, Commit(cursor="2026-11-27T09:00:00.0000000Z"))
        assert s.streams[S].cursor == "2026-11-27T09:30:00.0000000Z"
        assert s.streams[S].seen == {"new": "2026-11-27T09:30:00.0000000Z"}
        s.save()
        replayed = store(tmp_path).load()[S]
        assert (replayed.cursor, replayed.seen) == (s.streams[S].cursor, s.streams[S].seen)

    def test_document_of_the_previous_format_is_read(self, tmp_path: Path) -> None:
        """A snapshot without ``lsn`` (written before the journal existed) is still a checkpoint."""
        doc = {"version": 1, "agent": "agent", "written_at": NOW, "streams": {S: {"cursor": TS, "seen": {}}}}
        (tmp_path / "agent.checkpoint.json").write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
        s = store(tmp_path)
        assert s.load()[S].cursor == TS and s.lsn == 0


class TestCost:
    def test_a_save_appends_what_the_batch_holds_not_the_state(self, tmp_path: Path) -> None:
        """With 50,000 remembered keys, saving one 10-key commit appends about 10 keys' worth."""
        s = store(tmp_path, compact_min_bytes=1 << 30)
        s.open()
        s.apply(S, Commit(seen={f"id-{i:06d}": TS for i in range(50_000)}))
        s.save()
        before = s.files.journal.stat().st_size
        s.apply(S, Commit(seen={f"new-{i}": TS for i in range(10)}))
        s.save()
        assert 0 < s.files.journal.stat().st_size - before < 1000


class TestRecovery:
    def _journal(self, tmp_path: Path, commits: int) -> CheckpointStore:
        s = store(tmp_path)
        s.open()
        for i in range(commits):
            s.apply(S, Commit(seen={f"id{i}": TS}))
            s.save()
        return s

    @pytest.mark.parametrize("tail", [b"0000abcd {", b"\0\0\0\0\0\0\0\0", b'deadbeef {"n": 4}\n'])
    def test_torn_tail_is_ignored_and_folded_away_by_open(self, tmp_path: Path, tail: bytes) -> None:
        """A half-written last record (no newline, zeros, bad checksum) is skipped; ``open`` rewrites
        the snapshot and removes the journal, so later appends never follow the torn bytes."""
        s = self._journal(tmp_path, 3)
        with s.files.journal.open("ab") as fh:
            fh.write(tail)
        again = store(tmp_path)
        assert set(again.load()[S].seen) == {"id0", "id1", "id2"}
        again.open()
        assert not again.files.journal.exists() and again.lsn == 3
        again.apply(S, Commit(seen={"id3": TS}))
        again.save()
        assert set(store(tmp_path).load()[S].seen) == {"id0", "id1", "id2", "id3"}

    def test_damage_before_good_records_is_corruption_naming_the_journal(self, tmp_path: Path) -> None:
        """A bad record followed by a good one is not a torn tail: exit 74 material, file untouched."""
        s = self._journal(tmp_path, 3)
        lines = s.files.journal.read_bytes().split(b"\n")
        lines[1] = lines[1].replace(b"id1", b"idX")
        s.files.journal.write_bytes(b"\n".join(lines))
        damaged = s.files.journal.read_bytes()
        with pytest.raises(StateError) as err:
            store(tmp_path).open()
        assert str(s.files.journal) in str(err.value) and "line 2" in str(err.value)
        assert "--reset-checkpoint" in str(err.value)
        assert s.files.journal.read_bytes() == damaged

    def test_interrupted_compaction_replays_both_journals(self, tmp_path: Path) -> None:
        """A crash between rotating the journal and writing the snapshot leaves ``.journal.old`` and a
        new ``.journal`` beside the older snapshot: recovery replays both, in order."""
        s = self._journal(tmp_path, 2)
        s.files.journal.rename(s.files.old_journal)
        s.apply(S, Commit(cursor=TS, prune_before=TS))
        s.apply(S, Commit(seen={"late": TS}))
        s.save()
        got = store(tmp_path).load()[S]
        assert got.cursor == TS and set(got.seen) == {"id0", "id1", "late"}

    def test_compaction_in_the_background_keeps_every_commit(self, tmp_path: Path) -> None:
        """Once the journal outgrows the snapshot, saves compact it: the snapshot holds everything,
        the old journal is gone, and what was saved meanwhile is in the new journal."""
        s = store(tmp_path, compact_min_bytes=2000)
        s.open()
        for i in range(200):
            s.apply(S, Commit(seen={f"id{i:04d}": TS}))
            s.save()
        s.wait_compaction()
        assert s.compactions >= 1 and not s.files.old_journal.exists()
        bound = max(2000, s.path.stat().st_size)  # the journal is compacted once it is this large
        assert s.files.journal.stat().st_size < 2 * bound
        assert store(tmp_path).load() == s.streams
        doc = orjson.loads(s.path.read_bytes())
        assert 0 < doc["lsn"] <= 200 and mode(s.path) == 0o600

    @pytest.mark.parametrize(
        "content",
        [
            b"{not json",
            b"[]",
            b'{"version": 99, "streams": {}}',
            b'{"version": 1, "streams": {"s": {"cursor": 5}}}',
            b'{"version": 1, "lsn": -1, "streams": {}}',
        ],
    )
    def test_corrupt_snapshot_is_a_clear_error_naming_the_file(self, tmp_path: Path, content: bytes) -> None:
        """A corrupt document raises StateError naming the path and the escape hatch; the file stays."""
        s = store(tmp_path)
        s.path.write_bytes(content)
        with pytest.raises(StateError) as err:
            s.open()
        assert str(s.path) in str(err.value)
        assert "--reset-checkpoint" in str(err.value)
        assert s.path.read_bytes() == content


class TestFailures:
    def test_failed_snapshot_write_keeps_old_document(self, tmp_path: Path) -> None:
        """A snapshot write that fails (file-size limit, as on a full disk) leaves the old one intact."""
        s = store(tmp_path)
        s.open()
        s.apply(S, Commit(cursor="2026-11-27T09:00:00.0000000Z"))
        s.close()
        before = s.path.read_bytes()
        s.apply(S, Commit(seen={f"id{i}": "2026-11-27T09:30:00.0000000Z" for i in range(100)}))
        old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (len(before) + 10, hard))
        try:
            with pytest.raises(StateError) as err:
                s.rewrite()
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
            signal.signal(signal.SIGXFSZ, old_handler)
        assert f"cannot write checkpoint {s.path}" in str(err.value)
        assert s.path.read_bytes() == before
        assert [p.name for p in tmp_path.iterdir()] == [s.path.name]  # no temp file left behind

    def test_failed_journal_append_is_sticky(self, tmp_path: Path) -> None:
        """A journal append that fails raises StateError naming the journal, and so does every later save."""
        s = store(tmp_path)
        s.open()
        s.apply(S, Commit(seen={"a": TS}))
        s.save()
        s.apply(S, Commit(seen={f"id{i}": TS for i in range(100)}))
        old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (s.files.journal.stat().st_size + 10, hard))
        try:
            with pytest.raises(StateError, match=f"cannot write checkpoint journal {s.files.journal}"):
                s.save()
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
            signal.signal(signal.SIGXFSZ, old_handler)
        s.apply(S, Commit(seen={"b": TS}))
        with pytest.raises(StateError):
            s.save()
        assert set(store(tmp_path).load()[S].seen) == {"a"}  # the torn tail is skipped

    def test_reset_moves_snapshot_and_journal_aside(self, tmp_path: Path) -> None:
        """The escape hatch (``siem-agent checkpoint reset``) keeps both files for forensics and
        starts empty."""
        s = store(tmp_path)
        s.path.write_bytes(b"garbage")
        s.files.journal.write_bytes(b"more garbage")
        said = reset_checkpoints(tmp_path, "agent", SystemClock(), None)
        moved = sorted(tmp_path.glob("agent.checkpoint.*.reset-*"))
        assert sorted(p.read_bytes() for p in moved) == [b"garbage", b"more garbage"]
        assert all(str(p) in said for p in moved)
        assert store(tmp_path).load() == {} and not s.exists()
