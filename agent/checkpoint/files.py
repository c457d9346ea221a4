"""Where one checkpoint lives: a snapshot document and its journal, named from one prefix.

``<prefix>.checkpoint.json`` is the snapshot, ``<prefix>.checkpoint.journal`` the journal being
appended to, ``<prefix>.checkpoint.journal.old`` a journal being compacted into a new snapshot. The
agent's prefix is ``<state_dir>/<name>``; a store per source (one prefix each) needs nothing more.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from agent.durable import sync_directory
from agent.errors import StateError


@dataclass(frozen=True, slots=True)
class CheckpointFiles:
    """The files of one checkpoint."""

    snapshot: Path
    journal: Path
    old_journal: Path

    @classmethod
    def at(cls, state_dir: Path, name: str) -> CheckpointFiles:
        """The files of the checkpoint called ``name`` in ``state_dir``."""
        base = state_dir / f"{name}.checkpoint"
        return cls(
            base.with_name(base.name + ".json"),
            base.with_name(base.name + ".journal"),
            base.with_name(base.name + ".journal.old"),
        )

    @classmethod
    def in_directory(cls, directory: Path) -> CheckpointFiles:
        """The files of a checkpoint that has ``directory`` to itself: ``checkpoint.json``, journals."""
        return cls.at(directory, "").renamed("checkpoint")

    def renamed(self, stem: str) -> CheckpointFiles:
        """The same files in the same directory, named ``<stem>.json``, ``<stem>.journal``, ``….old``."""
        d = self.snapshot.parent
        return CheckpointFiles(d / f"{stem}.json", d / f"{stem}.journal", d / f"{stem}.journal.old")

    @property
    def directory(self) -> Path:
        return self.snapshot.parent

    def all(self) -> tuple[Path, Path, Path]:
        """Every file, snapshot first, then the journals in the order they are replayed."""
        return (self.snapshot, self.old_journal, self.journal)

    def move_aside(self, stamp: str, label: str = "reset") -> list[Path]:
        """Rename every existing file to ``<file>.<label>-<stamp>`` (``file_stamp``); return the new
        paths. Raises ``StateError``.
        """
        moved = []
        for path in self.all():
            if not path.exists():
                continue
            target = path.with_name(f"{path.name}.{label}-{stamp}")
            try:
                os.replace(path, target)
            except OSError as exc:
                raise StateError(f"cannot move checkpoint {path} aside: {exc.strerror}") from None
            moved.append(target)
        if moved:
            sync_directory(self.directory)
        return moved


def file_stamp(timestamp: str) -> str:
    """An ISO 8601 ``timestamp`` as a file-name suffix: ``:`` and ``-`` left out."""
    return timestamp.replace(":", "").replace("-", "")


def remove(path: Path) -> None:
    """Unlink ``path`` if it exists (raises ``OSError`` for anything but its absence)."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
