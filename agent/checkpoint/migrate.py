"""Migration: the single checkpoint of earlier versions split into per-source checkpoints, once.

Earlier versions kept every stream in ``<state_dir>/<name>.checkpoint.json`` plus its journal. On
the first start of this version (of any replica: they take ``<name>.migrate.lock`` in turn), that
checkpoint is read — snapshot and journals, exactly as a start would — and every source found in it
gets ``sources/<source>/checkpoint.json`` with its streams' cursors and dedup keys (written
atomically, fsynced), including sources that are no longer configured or that other shards own. Then
the old files are renamed to ``<file>.migrated-<time>`` (kept, never deleted).

Interrupted at any point, the next start does it again: a per-source checkpoint that already exists is
left as it is (it was written by the interrupted run, and nothing polls before the old files are
renamed), so no cursor or key is lost and none is written twice. A stream whose source name cannot
be a directory name (not possible with this version's config rules) stays in the renamed file only,
with a warning.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path

from agent.checkpoint.files import CheckpointFiles, file_stamp
from agent.checkpoint.snapshot import render_snapshot, write_snapshot
from agent.checkpoint.sources import source_of, source_store
from agent.checkpoint.state import StreamState
from agent.checkpoint.store import CheckpointStore
from agent.errors import StateError

log = logging.getLogger(__name__)

_SAFE = re.compile(r"^[A-Za-z0-9_.-]+$")


def split_legacy(state_dir: Path, name: str, now: Callable[[], str]) -> list[str] | None:
    """Split ``<state_dir>/<name>.checkpoint.*`` into per-source checkpoints; the sources written.

    ``None`` when there is nothing to migrate. Raises ``StateError`` (unreadable old checkpoint,
    unwritable state directory); the old files then stay where they are.
    """
    old = CheckpointFiles.at(state_dir, name)
    if not any(p.exists() for p in old.all()):
        return None
    lock_path = state_dir / f"{name}.migrate.lock"
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise StateError(f"cannot open {lock_path}: {exc.strerror}") from None
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX)  # another replica may be migrating: wait for it
        if not any(p.exists() for p in old.all()):
            return None  # it did
        return _split(state_dir, name, old, now)
    finally:
        os.close(fd)  # releases the lock


def _split(state_dir: Path, name: str, old: CheckpointFiles, now: Callable[[], str]) -> list[str]:
    streams = CheckpointStore(state_dir, name, now, files=old).load()
    by_source: dict[str, dict[str, StreamState]] = {}
    for stream, state in streams.items():
        by_source.setdefault(source_of(stream), {})[stream] = state
    written = []
    for source, states in sorted(by_source.items()):
        if not _SAFE.match(source) or source in (".", ".."):
            log.warning(
                "Checkpoint streams of a source whose name cannot be a directory were not migrated.",
                extra={"source": source[:100], "streams": sorted(states)[:10]},
            )
            continue
        files = source_store(state_dir, source, name, now).files
        if any(p.exists() for p in files.all()):
            continue  # written by an interrupted migration (nothing polled since)
        try:
            files.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise StateError(f"cannot create {files.directory}: {exc.strerror}") from None
        write_snapshot(files.snapshot, render_snapshot(states, name, now(), 0))
        written.append(source)
    moved = [str(p) for p in old.move_aside(file_stamp(now()), label="migrated")]
    log.info(
        "Checkpoint split into per-source checkpoints.",
        extra={"sources": len(by_source), "written": len(written), "kept_as": moved},
    )
    return sorted(by_source)
