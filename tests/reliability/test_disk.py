"""Claim: when progress cannot be recorded, the agent stops instead of forwarding on (README, exit 74).

The state directory is a tiny tmpfs mounted for the test: in place as root (CI), else the test
re-runs as root of a private user namespace (tests/support/userns.py); a failed mount fails the test
with the reason. The real agent process forwards a backlog to a file
sink and commits its checkpoint; then the state directory becomes **full** (a filler file takes every
free block: ENOSPC) or **read-only** (remounted ``ro``: EROFS), and new alerts appear. Asserted:

* one clear error line naming the checkpoint journal and the OS reason; exit code 74 (no traceback);
* it stops polling: at most the poll in progress completes (requests <= those before the trouble +
  one poll's pages + the one in flight when it stops); it does not go on forwarding what it cannot
  record;
* the committed state (the source's snapshot and journal, read as a restart reads them) is intact:
  it still has everything committed before, claims nothing the sink does not have, and no temporary
  file is left behind (the journal may end in a torn record, which recovery skips);
* once the disk is fixed, a restart forwards every alert version (nothing lost).

Runtime: about 5 s per case.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from agent.simulator.server import backdate
from tests.support.agent_process import (
    AgentProcess,
    agent_settings,
    fast_source,
    read_checkpoint,
    read_jsonl,
    write_config,
)
from tests.support.simulator import SimEnv
from tests.support.userns import can_mount
from tests.support.wait import until

EXIT_STATE = 74


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs mounted at ``tmp_path/state`` (unmounted afterwards)."""
    mnt = tmp_path / "state"
    mnt.mkdir()
    if not can_mount():  # the test itself re-runs in a user namespace (conftest.py)
        yield mnt
        return
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        for _ in range(3):  # the tmpfs, and a read-only bind mount over it if one is left
            if subprocess.run(
                ["umount", "-l", str(mnt)], capture_output=True, timeout=30, check=False
            ).returncode:
                break


def fill(directory: Path) -> None:
    """Take every free block of the file system (bounded: 1 MiB tmpfs, 4 KiB writes)."""
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for _ in range(10_000):
            try:
                os.write(fd, b"\0" * 4096)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                return
        raise AssertionError("the tmpfs never filled up")
    finally:
        os.close(fd)


def mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, f"mount {' '.join(args)}: {done.stderr}"


def make_read_only(directory: Path) -> None:
    """A read-only bind mount of ``directory`` over itself: new writes there fail with EROFS.

    (Remounting the tmpfs itself ``ro`` is refused while the agent holds a file open for writing,
    e.g. its lock file; a bind mount made now has no writers of its own.)
    """
    mount("--bind", str(directory), str(directory))
    mount("-o", "remount,bind,ro", str(directory))


def undo_read_only(directory: Path) -> None:
    done = subprocess.run(["umount", str(directory)], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr


@pytest.mark.mounts
@pytest.mark.parametrize("trouble", ["full", "read-only"])
async def test_unwritable_state_dir_stops_the_agent_and_keeps_the_checkpoint(
    tmp_path: Path, tiny_tmpfs: Path, graph_sim: SimEnv, trouble: str
) -> None:
    sim = graph_sim.sim
    start = backdate(120)
    for i in range(30):
        sim.add_alerts(1, when=start + timedelta(seconds=i))
    out = tmp_path / "out.jsonl"
    sink = {"type": "file", "name": "file", "path": str(out), "codec": {"type": "json"}}
    sink["batch"] = {"timeout_secs": 0.05}
    settings = agent_settings(tiny_tmpfs, [fast_source(graph_sim.source(), page_size=10)], [sink])
    agent = AgentProcess(write_config(tmp_path / "agent.toml", settings), tmp_path / "agent.log")
    stream = "sim/alerts_v2/all"
    expected = {(a["id"], a["lastUpdateDateTime"]) for a in sim.alerts.values()}

    def committed_all() -> bool:
        state = read_checkpoint(tiny_tmpfs, "rel").get(stream, {})
        return state.get("cursor") is not None and set(state["seen"].items()) >= expected

    def delivered() -> set[tuple[str, str]]:
        return {(str(r["id"]), str(r["lastUpdateDateTime"])) for r in read_jsonl(out)}

    agent.start()
    try:
        await until(
            lambda: expected <= delivered() and committed_all(), 30, "backlog delivered and committed"
        )
        if trouble == "full":
            fill(tiny_tmpfs)
        else:
            make_read_only(tiny_tmpfs)
        before = read_checkpoint(tiny_tmpfs, "rel")
        journal = tiny_tmpfs / "sources" / "sim" / "checkpoint.journal"
        requests_before = len(sim.graph_requests())
        # Enough to outgrow the slack of the journal's last page (a tmpfs page takes ~50 records).
        for alert in sim.add_alerts(100):
            expected.add((alert["id"], alert["lastUpdateDateTime"]))
        code = await agent.wait_exit(30)
    finally:
        agent.kill()

    reason = "No space left on device" if trouble == "full" else "Read-only file system"
    assert code == EXIT_STATE, agent.log_text()[-3000:]
    text = agent.log_text()
    assert "Traceback" not in text
    errors = [r for r in agent.log_records() if r.get("level") == "error" or "raw" in r]
    assert len(errors) == 1, errors
    assert errors[0]["error"] == f"cannot write checkpoint journal {journal}: {reason}", errors[0]
    # Complete records written before the disk refused the rest are acknowledged progress, and count.
    after = read_checkpoint(tiny_tmpfs, "rel")
    got = set(after.get(stream, {}).get("seen", {}).items())
    assert set(before[stream]["seen"].items()) <= got, "committed progress was lost or is unreadable"
    assert got <= delivered(), "the checkpoint claims an alert version the sink does not have"
    leftovers = [p.name for p in tiny_tmpfs.rglob("*.tmp")]
    assert leftovers == [], "a temporary checkpoint file was left behind"
    # It stopped polling: at most the rest of the poll that was running when the write failed, plus
    # the page requested as the stop came (a poll here reads every alert: ceil(130 / 10) pages).
    assert len(sim.graph_requests()) <= requests_before + 13 + 1

    # Fix the disk: a restart resumes from the old checkpoint and loses nothing.
    if trouble == "full":
        (tiny_tmpfs / "filler").unlink()
    else:
        undo_read_only(tiny_tmpfs)
    agent.start()
    try:
        await until(lambda: expected <= delivered() and committed_all(), 30, "every version, committed")
        assert await agent.stop() == 0
    finally:
        agent.kill()
