"""Per-source checkpoints: each source's streams in ``<state_dir>/sources/<source>/``.

Layout of one source's directory (mode 0700)::

    sources/<source>/checkpoint.json            snapshot (agent.checkpoint.snapshot)
    sources/<source>/checkpoint.journal         journal being appended to (agent.checkpoint.journal)
    sources/<source>/checkpoint.journal.old     journal being compacted (only while it is)
    sources/<source>/lock                       the source's lock (agent.sourcelock)

A source's checkpoint belongs to whichever replica holds its lock, so a source that moves to another
replica over a shared volume continues from its own checkpoint. ``SourceStores`` is the commit path's
``ProgressStore`` over all the sources this process owns: a commit goes to the store of its stream's
source (stream ids start with ``<source>/``), and ``save`` appends to each store that has something
new (one append and fsync per source with progress; none for idle sources).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from agent.checkpoint.files import CheckpointFiles
from agent.checkpoint.state import StreamState
from agent.checkpoint.store import CheckpointStore
from agent.model import Commit

SOURCES_DIR = "sources"


def source_of(stream: str) -> str:
    """The source a stream id belongs to (its first path segment)."""
    return stream.split("/", 1)[0]


def source_dir(state_dir: Path, source: str) -> Path:
    """The directory of ``source``'s checkpoint and lock."""
    return state_dir / SOURCES_DIR / source


def source_store(state_dir: Path, source: str, agent: str, now: Callable[[], str]) -> CheckpointStore:
    """The checkpoint store of ``source`` (not loaded)."""
    return CheckpointStore(
        state_dir, agent, now, files=CheckpointFiles.in_directory(source_dir(state_dir, source))
    )


def stored_sources(state_dir: Path) -> list[str]:
    """Sources that have a directory under ``<state_dir>/sources`` (sorted)."""
    root = state_dir / SOURCES_DIR
    try:
        return sorted(p.name for p in root.iterdir() if p.is_dir())
    except FileNotFoundError:
        return []


class _Streams(Mapping[str, StreamState]):
    """Every owned source's streams as one read-only mapping (what the commit path reads lag from)."""

    def __init__(self, stores: dict[str, CheckpointStore]) -> None:
        self._stores = stores

    def __getitem__(self, stream: str) -> StreamState:
        store = self._stores.get(source_of(stream))
        if store is None:
            raise KeyError(stream)
        return store.streams[stream]

    def __iter__(self) -> Iterator[str]:
        for store in list(self._stores.values()):
            yield from list(store.streams)

    def __len__(self) -> int:
        return sum(len(s.streams) for s in self._stores.values())


class SourceStores:
    """The checkpoints of the sources this process owns, as one ``ProgressStore``."""

    def __init__(self, state_dir: Path, agent: str, now: Callable[[], str]) -> None:
        self.state_dir = state_dir
        self.agent = agent
        self._now = now
        self._stores: dict[str, CheckpointStore] = {}
        self._dirty: set[str] = set()
        self._lock = threading.Lock()
        self.streams: Mapping[str, StreamState] = _Streams(self._stores)

    def open(self, source: str) -> dict[str, StreamState]:
        """Load ``source``'s checkpoint (hold its lock first). Raises ``StateError`` naming the file."""
        store = source_store(self.state_dir, source, self.agent, self._now)
        streams = store.resume()
        self._stores[source] = store
        return streams

    @property
    def dirty(self) -> bool:
        return bool(self._dirty)

    def apply(self, stream: str, commit: Commit) -> None:
        source = source_of(stream)
        self._stores[source].apply(stream, commit)
        with self._lock:
            self._dirty.add(source)

    def save(self) -> None:
        """Append what each source applied to its journal (one fsync per source with progress)."""
        with self._lock:
            dirty, self._dirty = self._dirty, set()
        for source in sorted(dirty):
            self._stores[source].save()

    def close(self) -> None:
        """Journal what is left of every source (``StateError`` for the first that fails)."""
        self.save()
        for store in self._stores.values():
            store.wait_compaction()
