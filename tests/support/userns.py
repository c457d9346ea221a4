"""Run a test that mounts file systems without root: again, in a user and mount namespace.

Tests marked ``mounts`` mount a tmpfs (``mount`` needs root). CI runs as root and runs them in
place. A developer who is not root gets the same test re-run in a child pytest under
``unshare --map-root-user --mount``: root inside a private namespace, whose mounts nobody else sees
and which vanish with it. Where unprivileged user namespaces are disabled the test is skipped with
that reason (never under CI=true).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CHILD_TIMEOUT_SECS = 300


def can_mount() -> bool:
    """Whether this process may mount (root, or already root inside a user namespace)."""
    return os.geteuid() == 0


def _userns_works(unshare: str) -> bool:
    probe = subprocess.run(
        [unshare, "--map-root-user", "--mount", "true"], capture_output=True, timeout=30, check=False
    )
    return probe.returncode == 0


def run_in_user_namespace(item: pytest.Item) -> None:
    """Re-run ``item`` in a child pytest as root of a new user and mount namespace; fail with the
    child's output if it does not pass."""
    unshare = shutil.which("unshare")
    if unshare is None or not _userns_works(unshare):
        reason = "needs root, or unprivileged user namespaces (`unshare -rm`), to mount a tmpfs"
        if os.environ.get("CI", "").lower() in {"true", "1"}:
            pytest.fail(f"{reason} (CI=true: never skipped)")
        pytest.skip(reason)
    rootdir = Path(item.config.rootpath)
    cmd = [
        unshare,
        "--map-root-user",
        "--mount",
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
    ]
    proc = subprocess.run(
        [*cmd, item.nodeid],
        cwd=rootdir,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_SECS,
        check=False,
    )
    if proc.returncode != 0 or " passed" not in proc.stdout:
        pytest.fail(
            f"in a user namespace, {item.nodeid} did not pass:\n{proc.stdout[-6000:]}{proc.stderr[-2000:]}"
        )
