"""Locks on state files that several replicas may share (a ReadWriteMany volume): POSIX record locks.

A ``FileLock`` is an exclusive ``fcntl`` record lock (``lockf``, i.e. ``F_SETLK`` on the whole file)
held through one open descriptor for as long as its owner runs; the kernel releases it when the
process exits, even after SIGKILL, so a stale lock file never blocks anything. POSIX locks rather than
``flock``: on NFS, Linux emulates ``flock`` with POSIX locks anyway, and the NFS lock protocol (NLM for
v3, built into v4) only knows POSIX locks; what a shared volume must provide is working ``fcntl`` locks
(NFSv4, CephFS, Azure Files over NFS 4.1 do; SMB/CIFS mounts without ``nobrl`` do too).

Two POSIX rules this relies on and respects: locks belong to the process (so one process can hold
the locks of many sources, each its own file), and closing *any* descriptor of a locked file drops
the process's lock on it — so a lock file is opened in exactly one place and nothing else opens it.

The lock file holds one line naming the holder (host name and pid), for the log line of a replica that
waits for it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from pathlib import Path

from agent.errors import StateError


class FileLock:
    """``try_acquire`` returns whether it got the lock; ``release`` is idempotent."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        """Take the lock if nobody holds it. Raises ``StateError`` when the file cannot be opened."""
        if self._fd is not None:
            return True
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StateError(f"cannot open lock file {self.path}: {exc.strerror}") from None
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if isinstance(exc, BlockingIOError | PermissionError):  # EAGAIN / EACCES: held elsewhere
                return False
            raise StateError(f"cannot lock {self.path}: {exc.strerror}") from None
        with contextlib.suppress(OSError):  # who holds it, for whoever waits (best effort)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{socket.gethostname()} pid {os.getpid()}\n".encode(), 0)
        self._fd = fd
        return True

    def holder(self) -> str:
        """Who wrote the lock file last (the holder, while it is held); ``"unknown"`` if unreadable."""
        with contextlib.suppress(OSError):
            text = self.path.read_bytes()[:200].decode("utf-8", "replace").strip()
            if text:
                return text
        return "unknown"

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                fcntl.lockf(fd, fcntl.LOCK_UN)
            os.close(fd)
