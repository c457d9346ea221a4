"""Processes of the end-to-end benchmarks: the fake Graph, the receiver, the agent; core pinning; RSS.

Layout on a 2-core machine: the fake Graph and the receiver share core 0, the process measured
(agent or floor) gets core 1 to itself (``taskset`` when available), so it never shares its core
with the load generator.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
#: Where the agent under test is imported from (``BENCH_AGENT_ROOT``: e.g. a copy with a change
#: reverted, for a before/after comparison in the same session).
AGENT_ROOT = Path(os.environ.get("BENCH_AGENT_ROOT", str(ROOT)))
PYTHON = sys.executable
MEASURED_CORE = "1"
HELPER_CORE = "0"
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the benchmark process dies (Linux ``prctl``)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def spawn(argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """``subprocess.Popen`` whose child cannot outlive this process (a crashed bench leaves nothing)."""
    return subprocess.Popen(argv, preexec_fn=_die_with_parent, **kwargs)  # noqa: PLW1509


def pinned(core: str, argv: list[str]) -> list[str]:
    """``argv`` under ``taskset -c core`` when taskset exists and the machine has that core."""
    if shutil.which("taskset") and (os.cpu_count() or 1) > int(core):
        return ["taskset", "-c", core, *argv]
    return argv


def wait_file(path: Path, proc: subprocess.Popen[bytes], seconds: float = 60.0) -> bytes:
    """The content of ``path`` once it exists; fails if ``proc`` exits or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists():
            return path.read_bytes()
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} before writing {path}")
        time.sleep(0.05)
    raise TimeoutError(f"{path} did not appear within {seconds}s")


@contextlib.contextmanager
def fake_graph(workdir: Path, *extra: str) -> Iterator[dict[str, Any]]:
    """Start ``bench.fakegraph`` (core 0); yield its ``graph.json``; stop it on exit."""
    d = workdir / "graph"
    d.mkdir(parents=True, exist_ok=True)
    proc = spawn(
        pinned(HELPER_CORE, [PYTHON, "-m", "bench.fakegraph", "--dir", str(d), *extra]),
        cwd=ROOT,
        stdin=subprocess.PIPE,
    )
    try:
        info: dict[str, Any] = orjson.loads(wait_file(d / "graph.json", proc, 180.0))
        info["path"] = str(d / "graph.json")
        yield info
    finally:
        stop(proc)


def start_receiver(workdir: Path, *args: str) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``bench.receiver`` (core 0); return it and its port."""
    d = workdir / f"receiver-{time.monotonic_ns()}"
    d.mkdir(parents=True)
    proc = spawn(
        pinned(HELPER_CORE, [PYTHON, "-m", "bench.receiver", "--dir", str(d), *args]),
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )
    return proc, int(wait_file(d / "receiver.port", proc))


def receiver_result(proc: subprocess.Popen[bytes], seconds: float) -> dict[str, Any]:
    """Wait (bounded) for the receiver's JSON line."""
    out, _ = proc.communicate(timeout=seconds)
    result: dict[str, Any] = orjson.loads(out.strip().splitlines()[-1])
    return result


def stop(proc: subprocess.Popen[bytes], seconds: float = 20.0) -> int:
    """SIGTERM ``proc`` (a process we started), then SIGKILL after ``seconds``; its exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(seconds)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    for f in (proc.stdin, proc.stdout):
        if f is not None:
            with contextlib.suppress(OSError):
                f.close()
    return proc.returncode


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def write_config(path: Path, config: dict[str, Any]) -> Path:
    """Write ``config`` as TOML (top-level keys, everything below as inline tables)."""
    path.write_text("".join(f"{k} = {_toml(v)}\n" for k, v in config.items()))
    return path


def agent_config(
    graph: dict[str, Any], port: int, state_dir: Path, source: dict[str, Any], sink: dict[str, Any]
) -> dict[str, Any]:
    """One Graph source (the fake) and one TCP sink (CEF in RFC 5424, octet counting) to ``port``."""
    return {
        "name": "bench",
        "state_dir": str(state_dir),
        # checkpoint_interval_secs: each agent's own default (since issue #15: 0, one journal append
        # and fsync per batch before the next batch is sent; before it: 1 s, a full rewrite each time).
        "shutdown_timeout_secs": 5,
        "log": {"level": "warning", "format": "json"},
        "http": {"enabled": False},
        "sources": [
            {
                "type": "graph_security",
                "name": "fake",
                "tenant_id": graph["tenant_id"],
                "client_id": graph["client_id"],
                "client_secret": graph["client_secret"],
                "authority_url": graph["base"],
                "graph_url": graph["base"],
                "ca_bundle": graph["ca"],
                **source,
            }
        ],
        "sinks": [
            {
                "type": "tcp",
                "name": "siem",
                "host": "127.0.0.1",
                "port": port,
                "framing": "octet_counting",
                "codec": {"type": "syslog5424", "hostname": "bench", "msg": {"type": "cef"}},
                **sink,
            }
        ],
    }


def start_agent(
    config: Path,
    log: Path,
    prefix: list[str] | None = None,
    root: Path = AGENT_ROOT,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """``python -m agent.cli run --config`` on the measured core (``prefix``: e.g. a profiler), with
    the ``agent`` package imported from ``root`` and ``env`` added to the environment."""
    argv = [*(prefix or [PYTHON]), "-m", "agent.cli", "run", "--config", str(config)]
    with log.open("ab") as err:
        return spawn(
            pinned(MEASURED_CORE, argv), cwd=root, stdout=err, stderr=err, env={**os.environ, **(env or {})}
        )


def vm_mib(pid: int, key: str = "VmRSS:") -> float:
    """A ``/proc/<pid>/status`` memory line (``VmRSS:`` resident now, ``VmHWM:`` peak) in MiB; 0 if
    the process is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    for line in status.splitlines():
        if line.startswith(key):
            return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mib(pid: int) -> float:
    """``VmHWM`` (peak resident set) of ``pid`` in MiB; 0 if it is gone."""
    return vm_mib(pid, "VmHWM:")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time ``pid`` has used so far (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
