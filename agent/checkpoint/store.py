"""The checkpoint store: a snapshot plus an append-only journal, so a save costs what a batch holds.

* ``apply`` (on the event loop) records one acknowledged ``Commit`` in memory and queues its journal
  record; ``save`` (from any one thread at a time) appends the queued records to the journal with one
  ``write`` and one ``fsync``. Its cost is proportional to the batches committed since the last save,
  not to the state (up to ``max_seen_ids`` keys per stream).
* Compaction: once the journal is as large as the snapshot (at least ``compact_min_bytes``), ``save``
  renames it to ``.journal.old``, copies the state (under the lock ``apply`` takes), and a background
  thread writes that copy as the new snapshot (atomically: tmp, fsync, rename, fsync dir) and then
  removes the old journal. Saves go on meanwhile into a new journal. The amortised cost per record is
  therefore bounded by a small multiple of its own size.
* Recovery (``load``): the snapshot, then ``.journal.old`` and ``.journal`` in that order, skipping
  records the snapshot already holds (``lsn``); a torn tail is ignored, any other damage raises
  ``StateError`` naming the file. The running agent's per-source stores (``SourceStores.open``)
  ``resume``: they go on appending to the journal they have, and rewrite the files only when appends
  could not simply follow (a torn tail, a compaction cut short). A single-checkpoint run (``backfill``)
  uses ``open``, which writes everything as a fresh snapshot and drops the journals, and ``close``,
  which does the same on a clean stop, leaving one file. Moving a checkpoint aside is
  ``CheckpointFiles.move_aside`` (``siem-agent checkpoint reset``).

It only ever holds acknowledged progress (see ``agent.pipeline.acks``) and never resets itself.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from agent.checkpoint.files import CheckpointFiles, remove
from agent.checkpoint.journal import JournalWriter, encode_record, read_journal
from agent.checkpoint.snapshot import read_snapshot, render_snapshot, write_snapshot
from agent.checkpoint.state import StreamState, apply_commit
from agent.durable import sync_directory
from agent.errors import StateError
from agent.model import Commit

#: Never compact a journal smaller than this (a small snapshot would otherwise be rewritten often).
COMPACT_MIN_BYTES = 1 << 20


class CheckpointStore:
    """Loads, updates (in memory), journals and compacts one checkpoint."""

    def __init__(
        self,
        state_dir: Path,
        agent: str,
        now: Callable[[], str],
        *,
        files: CheckpointFiles | None = None,
        compact_min_bytes: int = COMPACT_MIN_BYTES,
    ) -> None:
        self.files = files or CheckpointFiles.at(state_dir, agent)
        self.agent = agent
        self._now = now
        self.streams: dict[str, StreamState] = {}
        self.compact_min_bytes = compact_min_bytes
        #: Number of the last record applied (in memory) and of the last one in the journal.
        self.lsn = 0
        self._pending: list[bytes] = []
        self._state_lock = threading.Lock()  # streams, _pending, lsn: apply vs. a compaction's copy
        self._io_lock = threading.Lock()  # one journal writer at a time (writer thread vs. shutdown)
        self._journal = JournalWriter(self.files.journal)
        self._snapshot_bytes = 0
        self._compactor: threading.Thread | None = None
        self._torn = False
        self._failure: StateError | None = None
        #: Snapshots written by background compaction (for tests and benchmarks).
        self.compactions = 0

    @property
    def path(self) -> Path:
        """The snapshot document (what ``checkpoint show`` names)."""
        return self.files.snapshot

    @property
    def dirty(self) -> bool:
        """Whether something was applied that is not in the journal yet."""
        return bool(self._pending)

    def exists(self) -> bool:
        """Whether any file of this checkpoint exists."""
        return any(p.exists() for p in self.files.all())

    # -- reading -----------------------------------------------------------------------------------

    def load(self) -> dict[str, StreamState]:
        """Snapshot plus journals, read only (a torn tail is skipped). Raises ``StateError``."""
        snapshot = read_snapshot(self.files.snapshot)
        streams = snapshot.streams if snapshot is not None else {}
        lsn = snapshot.lsn if snapshot is not None else 0
        torn = False
        for path in (self.files.old_journal, self.files.journal):
            journal = read_journal(path)
            torn = torn or (journal is not None and journal.torn)
            for record in journal.records if journal is not None else []:
                if record.n > lsn:
                    apply_commit(streams, record.stream, record.commit)
                    lsn = record.n
        self.streams, self.lsn, self._pending = streams, lsn, []
        self._snapshot_bytes = self.files.snapshot.stat().st_size if snapshot is not None else 0
        self._torn = torn
        return self.streams

    def open(self) -> dict[str, StreamState]:
        """``load``, then fold any journal into a fresh snapshot, or write the first one (for the one
        process that writes: an unwritable state directory fails here, at startup)."""
        self.load()
        if not self.files.snapshot.exists() or self.files.journal.exists() or self.files.old_journal.exists():
            self.rewrite()
        return self.streams

    def resume(self) -> dict[str, StreamState]:
        """``load`` for a store that goes on appending to the journal it has (a per-source checkpoint:
        opening a thousand of them must not write a thousand snapshots). The files are rewritten only
        when appends could not simply follow: a journal that ends torn, or a compaction cut short."""
        self.load()
        if self._torn or self.files.old_journal.exists():
            self.rewrite()
        elif self.files.journal.exists():
            self._journal.size = self.files.journal.stat().st_size
        return self.streams

    # -- writing -----------------------------------------------------------------------------------

    def apply(self, stream: str, commit: Commit) -> None:
        """Record acknowledged progress in memory and queue its journal record (``save`` writes it)."""
        with self._state_lock:
            self.lsn += 1
            apply_commit(self.streams, stream, commit)
            self._pending.append(encode_record(self.lsn, stream, commit))

    def save(self) -> None:
        """Append what was applied to the journal and fsync it; start a compaction when due.

        Raises ``StateError`` (also for a failed background compaction); after one, every later
        ``save`` raises it again: the agent stops, and the files on disk stay a valid checkpoint.
        """
        with self._io_lock:
            if self._failure is not None:
                raise self._failure
            with self._state_lock:
                records, self._pending = self._pending, []
            if not records:
                return
            try:
                self._journal.append(b"".join(records))
            except StateError as exc:
                self._failure = exc
                raise
            if self._compaction_due():
                self._start_compaction()

    def _compaction_due(self) -> bool:
        busy = self._compactor is not None and self._compactor.is_alive()
        due = self._journal.size >= max(self.compact_min_bytes, self._snapshot_bytes)
        return due and not busy and not self.files.old_journal.exists()

    def _start_compaction(self) -> None:
        """Rotate the journal and write the state as it is now in a background thread (under ``_io_lock``)."""
        with self._state_lock:
            copy = {n: StreamState(s.cursor, dict(s.seen)) for n, s in self.streams.items()}
            lsn = self.lsn
        try:
            self.files.journal.rename(self.files.old_journal)
        except OSError as exc:
            self._failure = StateError(
                f"cannot rotate checkpoint journal {self.files.journal}: {exc.strerror}"
            )
            raise self._failure from None
        self._journal = JournalWriter(self.files.journal)
        self._compactor = threading.Thread(
            target=self._compact, args=(copy, lsn), name="checkpoint-compaction", daemon=True
        )
        self._compactor.start()

    def _compact(self, streams: dict[str, StreamState], lsn: int) -> None:
        try:
            data = render_snapshot(streams, self.agent, self._now(), lsn)
            write_snapshot(self.files.snapshot, data)
            try:
                remove(self.files.old_journal)
                sync_directory(self.files.directory)
            except OSError as exc:
                raise StateError(
                    f"cannot remove checkpoint journal {self.files.old_journal}: {exc.strerror}"
                ) from None
        except StateError as exc:
            self._failure = exc
            return
        self._snapshot_bytes = len(data)
        self.compactions += 1

    def wait_compaction(self) -> None:
        """Block until a background compaction finished; raise its ``StateError`` if it failed."""
        compactor = self._compactor
        if compactor is not None:
            compactor.join()
        if self._failure is not None:
            raise self._failure

    def rewrite(self) -> None:
        """Write the whole state as the snapshot now and remove the journals. Raises ``StateError``."""
        with self._io_lock:
            self.wait_compaction()
            with self._state_lock:
                data = render_snapshot(self.streams, self.agent, self._now(), self.lsn)
                self._pending = []
            write_snapshot(self.files.snapshot, data)
            try:
                remove(self.files.old_journal)
                remove(self.files.journal)
                sync_directory(self.files.directory)
            except OSError as exc:
                raise StateError(
                    f"cannot remove checkpoint journal {self.files.journal}: {exc.strerror}"
                ) from None
            self._journal = JournalWriter(self.files.journal)
            self._snapshot_bytes = len(data)

    def close(self) -> None:
        """On a clean stop: journal what is left, then fold it all into the snapshot (``StateError``)."""
        self.save()
        self.wait_compaction()
        if self.files.journal.exists() or self.files.old_journal.exists():
            self.rewrite()
