"""Durable writes: every byte of a buffer onto a file descriptor, then (optionally) onto the disk.

``os.write`` may write fewer bytes than asked (signals, a full pipe, quotas), so the rest is written
again until nothing is left; ``fsync`` then makes it survive a power loss. The checkpoint, the
dead-letter file and the file sink all write this way.
"""

from __future__ import annotations

import os


def write_all(fd: int, data: bytes, *, fsync: bool = True) -> None:
    """Write all of ``data`` to ``fd``, then ``fsync`` it unless told not to. Raises ``OSError``."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    if fsync:
        os.fsync(fd)
