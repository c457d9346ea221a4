"""Durable writes: every byte of a buffer onto a file descriptor, then (optionally) onto the disk.

``os.write`` may write fewer bytes than asked (signals, a full pipe, quotas), so the rest is written
again until nothing is left; ``fsync`` then makes it survive a power loss. The checkpoint, the
dead-letter file and the file sink all write this way. ``replace_atomically`` replaces a whole file
(checkpoint snapshots, compacted journals): a crash leaves the old file or the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_all(fd: int, data: bytes, *, fsync: bool = True) -> None:
    """Write all of ``data`` to ``fd``, then ``fsync`` it unless told not to. Raises ``OSError``."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    if fsync:
        os.fsync(fd)


def sync_directory(directory: Path) -> None:
    """fsync ``directory`` so renames, creations and removals in it survive a power loss."""
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def replace_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` (mode 0600): written to a temporary file beside it, fsync'd,
    renamed over it, the directory fsync'd. Raises ``OSError``; the old file then stays intact."""
    directory = path.parent
    tmp_name: str | None = None
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
        try:
            os.fchmod(fd, 0o600)
            write_all(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp_name, path)
        tmp_name = None
        sync_directory(directory)
    finally:
        if tmp_name is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
