"""The real ``siem-agent`` process for tests: config as TOML, launch, kill, logs, ops endpoint, memory.

``AgentProcess`` runs ``python -m agent.cli run --config FILE`` with JSON logs appended to one file
across restarts, so a test can SIGKILL and restart it many times and still read every log line.
``write_config`` renders a settings dict as TOML (inline tables; ``None`` values are left out).
Nothing here sleeps to synchronise: waits poll a condition with a deadline (``tests.support.wait``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

from agent.checkpoint.sources import source_store, stored_sources
from agent.errors import StateError
from tests.support.wait import until

EXE = [sys.executable, "-m", "agent.cli"]
SERVING = "Serving /metrics, /healthz, /readyz."


def toml_value(value: Any) -> str:
    """One TOML value: strings/numbers/bools as JSON (valid TOML), dicts as inline tables, lists as arrays."""
    if isinstance(value, dict):
        inner = ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items() if v is not None)
        return "{ " + inner + " }" if inner else "{}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, bool | int | float | str):
        return orjson.dumps(value).decode()
    raise TypeError(f"cannot render {type(value).__name__} as TOML")


def toml_key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else orjson.dumps(key).decode()


def to_toml(data: dict[str, Any]) -> str:
    """A settings dict as a TOML document (every nested table inline)."""
    return "".join(f"{toml_key(k)} = {toml_value(v)}\n" for k, v in data.items() if v is not None)


def write_config(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(to_toml(data))
    return path


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without ``SIEM_AGENT_*`` overrides, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIEM_AGENT_")}
    env.update(extra)
    return env


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> tuple[int, str, str]:
    """Run ``siem-agent ARGS`` to completion; ``(exit code, stdout, stderr)``."""
    proc = subprocess.run(
        [*EXE, *args], capture_output=True, text=True, timeout=timeout, env=env or clean_env(), check=False
    )
    return proc.returncode, proc.stdout, proc.stderr


class AgentProcess:
    """One agent configuration, run as a real process (possibly many times in a row)."""

    def __init__(
        self,
        config: Path,
        log_path: Path,
        env: dict[str, str] | None = None,
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        self.config = config
        self.log_path = log_path
        self.env = env or clean_env()
        self.preexec_fn = preexec_fn
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        #: Offset in the log file where the current run's lines begin.
        self.run_offset = 0

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self, *extra: str) -> None:
        assert self.proc is None or self.proc.poll() is not None, "agent already running"
        self.run_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [*EXE, "run", "--config", str(self.config), *extra],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=self.env,
                preexec_fn=self.preexec_fn,  # noqa: PLW1509 - only resource limits, set before exec
            )
        self.starts += 1

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL and reap (no cleanup of any kind runs in the agent)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    async def wait_exit(self, timeout: float = 20.0) -> int:
        """Wait (without blocking the event loop) for the process to exit; its exit code."""
        await until(lambda: self.proc is not None and self.proc.poll() is not None, timeout, "agent exit")
        assert self.proc is not None and self.proc.returncode is not None
        return self.proc.returncode

    async def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait; SIGKILL if it does not exit in time (the test then fails on the code)."""
        if not self.alive():
            assert self.proc is not None
            return self.proc.returncode if self.proc.returncode is not None else -1
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return await self.wait_exit(timeout)
        except AssertionError:
            self.kill()
            raise

    # -- observation ---------------------------------------------------------------------------

    def log_text(self, this_run: bool = False) -> str:
        if not self.log_path.exists():
            return ""
        data = self.log_path.read_bytes()
        return data[self.run_offset if this_run else 0 :].decode("utf-8", "replace")

    def log_records(self, this_run: bool = False) -> list[dict[str, Any]]:
        """Every JSON log line (lines that are not JSON are returned as ``{"raw": line}``)."""
        out: list[dict[str, Any]] = []
        for line in self.log_text(this_run).splitlines():
            try:
                doc = orjson.loads(line)
            except orjson.JSONDecodeError:
                doc = {"raw": line}
            out.append(doc if isinstance(doc, dict) else {"raw": line})
        return out

    def messages(self, text: str, this_run: bool = False) -> list[dict[str, Any]]:
        """Log records whose message is ``text``."""
        return [r for r in self.log_records(this_run) if r.get("message") == text]

    async def ops_port(self, timeout: float = 20.0) -> int:
        """The port of /metrics, /readyz (from the "Serving …" log line of this run)."""
        found: list[int] = []

        def served() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"agent exited ({self.proc.returncode}):\n{self.log_text(True)[-3000:]}")
            found[:] = [int(r["port"]) for r in self.messages(SERVING, this_run=True)]
            return bool(found)

        await until(served, timeout, "the ops endpoint log line")
        return found[-1]

    def vm_hwm_kib(self) -> int:
        """Peak resident set size of the running agent (``VmHWM``, KiB)."""
        return _status_kib(self.pid, "VmHWM")

    def vm_rss_kib(self) -> int:
        return _status_kib(self.pid, "VmRSS")


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, str]:
    """GET ``http://127.0.0.1:port/path`` (blocking; the agent is another process): status and body."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def http_get_async(port: int, path: str, timeout: float = 5.0) -> tuple[int, str]:
    """``http_get`` in a worker thread, so an in-process simulator keeps serving meanwhile."""
    return await asyncio.to_thread(http_get, port, path, timeout)


async def until_async(cond: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    """``until`` for an async condition (e.g. each probe is an HTTP request to the agent)."""
    deadline = time.monotonic() + timeout
    while not await cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)  # polling interval between probes, not synchronisation


def metric(text: str, name: str, **labels: str) -> float | None:
    """A sample's value from Prometheus text exposition (``None`` when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        if head == name and not want:
            return float(value)
        if head.startswith(name + "{"):
            got = ",".join(sorted(head[len(name) + 1 : -1].split(",")))
            if got == want:
                return float(value)
    return None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Complete lines of a JSON-lines file (a last line still being written is left out).

    A line that is not a JSON object fails the test: a torn record must show, not be skipped.
    """
    if not path.exists():
        return []
    out = []
    for n, line in enumerate(path.read_bytes().split(b"\n")[:-1]):
        doc = orjson.loads(line)
        assert isinstance(doc, dict), f"{path}:{n + 1} is not a JSON object"
        out.append(doc)
    return out


def read_checkpoint(state_dir: Path, name: str) -> dict[str, dict[str, Any]]:
    """The committed state of every source as another process sees it now (each source's snapshot +
    journal, read only): ``{stream: {"cursor", "seen"}}``; empty while nothing was committed."""
    out: dict[str, dict[str, Any]] = {}
    for source in stored_sources(state_dir):
        try:
            streams = source_store(state_dir, source, name, lambda: "").load()
        except StateError:
            continue  # mid-compaction or mid-append: the caller polls again
        out.update({n: {"cursor": s.cursor, "seen": dict(s.seen)} for n, s in streams.items()})
    return out


def fast_source(source: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """A simulator source table with test timings: quick polls and retries, a budget that never binds."""
    table = dict(source)
    table.update(
        {
            "poll_interval_secs": 0.2,
            "overlap_secs": 600,
            "initial_lookback_secs": 3600,
            "request_timeout_secs": 5.0,
            "backoff_base_secs": 0.05,
            "backoff_max_secs": 0.5,
            "error_backoff_max_secs": 1.0,
            "requests_per_minute": 60_000,
            "max_concurrent_requests": 4,
        }
    )
    table.update(overrides)
    return table


def agent_settings(
    state_dir: Path, sources: list[dict[str, Any]], sinks: list[dict[str, Any]], **top: Any
) -> dict[str, Any]:
    """A complete settings dict for a process run: JSON logs, no ops endpoint unless ``http`` is given."""
    data: dict[str, Any] = {
        "name": "rel",
        "state_dir": str(state_dir),
        "shutdown_timeout_secs": 10,
        "checkpoint_interval_secs": 0,
        "log": {"format": "json"},
        "http": {"enabled": False},
        "sources": sources,
        "sinks": sinks,
    }
    data.update(top)
    return data
