"""The replica lock: one running agent per state directory, name and shard index.

``siem-agent run`` holds ``<state_dir>/<name>.lock`` (with ``[shard] count`` > 1:
``<name>.shard-<index>.lock``) with ``flock(LOCK_EX | LOCK_NB)`` for its whole life; the kernel
releases it when the process exits, even after a crash, so a stale lock file never blocks anything.
It guards what is private to a replica (its write-back queue, its dead-letter file); each source's
checkpoint has a lock of its own (``agent.sourcelock``), which is what keeps two replicas from
polling one source.

``flock`` here, not the POSIX record locks of ``agent.sourcelock``: a second ``StateLock`` on the same
file in the *same* process must fail too (POSIX locks belong to the process and would let it in).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from agent.errors import StateError


class StateLock:
    """``acquire`` raises ``StateError`` when another process holds the lock; ``release`` is idempotent."""

    def __init__(self, state_dir: Path, name: str) -> None:
        self.path = state_dir / f"{name}.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StateError(f"cannot open lock file {self.path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StateError(
                f"{self.path} is locked: an agent with this state_dir and name (and shard index) is running"
            ) from None
        except OSError as exc:
            os.close(fd)
            raise StateError(f"cannot lock {self.path}: {exc.strerror}") from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> StateLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
