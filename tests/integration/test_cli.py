"""The real ``siem-agent`` process: exit codes, validate output, SIGTERM drain, restart, corrupt state."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import orjson
import pytest

from tests.support.agent_process import read_checkpoint
from tests.support.simulator import SimEnv
from tests.support.wait import until

EXE = [sys.executable, "-m", "agent.cli"]


def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    import subprocess

    proc = subprocess.run([*EXE, *args], capture_output=True, text=True, timeout=60, env=env, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def toml_config(tmp_path: Path, sim: SimEnv, out: Path, shutdown_timeout_secs: int = 5) -> Path:
    src = sim.source()
    body = [
        'name = "cli"',
        f'state_dir = "{tmp_path / "state"}"',
        f"shutdown_timeout_secs = {shutdown_timeout_secs}",
        "checkpoint_interval_secs = 0",
        "[log]",
        'format = "json"',
        "[http]",
        "port = 0",
        "[[sources]]",
    ]
    for key, value in src.items():
        if key == "client_secret":
            body.append('client_secret = { env = "CLI_TEST_SECRET" }')
        else:
            body.append(f"{key} = {orjson.dumps(value).decode()}")
    body += ["[[sinks]]", 'type = "file"', 'name = "file"', f'path = "{out}"', 'codec = { type = "json" }']
    path = tmp_path / "agent.toml"
    path.write_text("\n".join(body) + "\n")
    return path


def env_with_secret(sim: SimEnv) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIEM_AGENT_")}
    env["CLI_TEST_SECRET"] = sim.sim.client_secret
    return env


def read_lines(path: Path) -> list[dict[str, object]]:
    return [orjson.loads(x) for x in path.read_bytes().splitlines()] if path.exists() else []


class TestCommands:
    def test_version_and_help(self) -> None:
        """--version and --help on every command exit 0."""
        code, out, _ = run_cli("--version")
        assert code == 0 and out.startswith("siem-agent ")
        for cmd in ("run", "validate", "demo"):
            code, out, _ = run_cli(cmd, "--help")
            assert code == 0 and "usage: siem-agent" in out

    def test_usage_error_exits_2_without_traceback(self) -> None:
        """A missing argument is a usage error (2), not a traceback."""
        code, _, err = run_cli("run")
        assert code == 2
        assert "Traceback" not in err and "--config" in err

    def test_validate_reports_each_problem_with_dotted_path(self, tmp_path: Path) -> None:
        """Typo'd key, wrong type and missing secret: one line each, exit 78, no traceback."""
        cfg = tmp_path / "bad.toml"
        cfg.write_text(
            "\n".join(
                [
                    "[[sources]]",
                    'type = "graph_security"',
                    'name = "t"',
                    'tenant_id = "t"',
                    'client_id = "c"',
                    'client_secret = { env = "SIEM_TEST_UNSET_SECRET" }',
                    "poll_interval_sec = 5",
                    'page_size = "big"',
                    "[[sinks]]",
                    'type = "stdout"',
                    'name = "out"',
                ]
            )
        )
        env = {k: v for k, v in os.environ.items() if k != "SIEM_TEST_UNSET_SECRET"}
        code, _, err = run_cli("validate", "--config", str(cfg), env=env)
        assert code == 78
        assert "Traceback" not in err
        assert sorted(err.strip().splitlines()) == [
            "sources[0].client_secret: environment variable SIEM_TEST_UNSET_SECRET is not set or empty",
            "sources[0].page_size: Input should be a valid integer, unable to parse string as an integer",
            "sources[0].poll_interval_sec: unknown key (check the spelling)",
        ]

    def test_validate_ok_and_missing_file(self, tmp_path: Path, graph_sim: SimEnv) -> None:
        """A good config validates (exit 0); a missing file is a config error naming it."""
        cfg = toml_config(tmp_path, graph_sim, tmp_path / "out.jsonl")
        code, out, _ = run_cli("validate", "--config", str(cfg), env=env_with_secret(graph_sim))
        assert code == 0 and "ok (1 source(s), 1 sink(s))" in out
        code, _, err = run_cli("validate", "--config", str(tmp_path / "nope.toml"))
        assert code == 78 and "nope.toml: file not found" in err

    def test_validate_lists_each_shards_sources(self, tmp_path: Path, graph_sim: SimEnv) -> None:
        """With ``[shard] count = 3``: one line per shard, every source on exactly one."""
        cfg = toml_config(tmp_path, graph_sim, tmp_path / "out.jsonl")
        names = [f"t{i}" for i in range(9)]
        tables = [
            "\n[[sources]]\n" + "".join(f"{k} = {orjson.dumps(v).decode()}\n" for k, v in src.items())
            for src in (graph_sim.source(name=n, tenant_id=f"tenant-{n}") for n in names)
        ]
        cfg.write_text(cfg.read_text() + "".join(tables) + "\n[shard]\ncount = 3\n")
        code, out, err = run_cli("validate", "--config", str(cfg), env=env_with_secret(graph_sim))
        assert code == 0, err
        lines = [line for line in out.splitlines() if line.startswith("shard ")]
        assert [line.split(":")[0] for line in lines] == ["shard 0", "shard 1", "shard 2"]
        listed = [n for line in lines for n in line.split(": ", 2)[2].split(", ") if n != "-"]
        assert sorted(listed) == sorted(["sim", *names])


class TestProcessLifecycle:
    async def test_sigterm_drains_exits_0_and_restart_does_not_reemit(
        self, tmp_path: Path, graph_sim: SimEnv
    ) -> None:
        """SIGTERM: exit 0 within the timeout with a valid checkpoint; a restart re-emits nothing."""
        graph_sim.sim.add_alerts(30)
        out = tmp_path / "out.jsonl"
        cfg = toml_config(tmp_path, graph_sim, out)
        env = env_with_secret(graph_sim)
        state = tmp_path / "state"

        def cursor_committed() -> bool:
            return any(s["cursor"] for s in read_checkpoint(state, "cli").values())

        proc = await asyncio.create_subprocess_exec(
            *EXE, "run", "--config", str(cfg), env=env, stderr=asyncio.subprocess.PIPE
        )
        try:
            await until(
                lambda: len(read_lines(out)) >= 30 and cursor_committed(), 20, "30 alerts + checkpoint"
            )
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(proc.wait(), 10)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert code == 0
        assert proc.stderr is not None
        logs = (await proc.stderr.read()).decode()
        leaked = graph_sim.sim.client_secret in logs
        assert not leaked, "the client secret leaked into the logs"
        assert len(read_checkpoint(state, "cli")["sim/alerts_v2/all"]["seen"]) == 30
        files = [p for p in (state / "sources" / "sim").iterdir() if p.name.startswith("checkpoint.")]
        assert files and all(oct(p.stat().st_mode & 0o777) == "0o600" for p in files)

        polls = len(graph_sim.sim.requests)
        proc = await asyncio.create_subprocess_exec(
            *EXE, "run", "--config", str(cfg), env=env, stderr=asyncio.subprocess.DEVNULL
        )
        try:
            await until(lambda: len(graph_sim.sim.requests) >= polls + 6, 20, "restarted agent polling")
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 10) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert len(read_lines(out)) == 30, "restart re-emitted acknowledged alerts"

    async def test_corrupt_checkpoint_stops_with_clear_error(self, tmp_path: Path, graph_sim: SimEnv) -> None:
        """A corrupt checkpoint: exit 74, the message names the file, nothing is polled or overwritten."""
        cfg = toml_config(tmp_path, graph_sim, tmp_path / "out.jsonl")
        ckpt = tmp_path / "state" / "sources" / "sim" / "checkpoint.json"
        ckpt.parent.mkdir(parents=True)
        ckpt.write_bytes(b'{"version": 1, "streams": ')
        proc = await asyncio.create_subprocess_exec(
            *EXE, "run", "--config", str(cfg), env=env_with_secret(graph_sim), stderr=asyncio.subprocess.PIPE
        )
        _, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 74
        text = err.decode()
        assert str(ckpt) in text and "corrupt" in text and "Traceback" not in text
        assert ckpt.read_bytes() == b'{"version": 1, "streams": '
        assert graph_sim.sim.requests == []

        proc = await asyncio.create_subprocess_exec(
            *EXE,
            "run",
            "--config",
            str(cfg),
            "--reset-checkpoint",
            env=env_with_secret(graph_sim),
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            await until(lambda: len(graph_sim.sim.requests) > 0, 20, "polling after reset")
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 10) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert any(p.name.startswith("checkpoint.json.reset-") for p in ckpt.parent.iterdir())

    @pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
    async def test_second_signal_exits_at_once(self, tmp_path: Path, graph_sim: SimEnv, signame: str) -> None:
        """A sink that cannot deliver holds the drain; a second signal ends it immediately (130)."""
        graph_sim.sim.add_alerts(5)
        blocked = tmp_path / "fifo-dir"
        blocked.mkdir()
        # The file sink's path is a directory: every write fails transiently, so nothing is ever delivered.
        cfg = toml_config(tmp_path, graph_sim, blocked, shutdown_timeout_secs=60)
        proc = await asyncio.create_subprocess_exec(
            *EXE, "run", "--config", str(cfg), env=env_with_secret(graph_sim), stderr=asyncio.subprocess.PIPE
        )
        try:
            assert proc.stderr is not None
            for _ in range(200):
                line = await asyncio.wait_for(proc.stderr.readline(), 20)
                if b"Sink start failed" in line or b"Send failed" in line:
                    break
            sig = getattr(signal, signame)
            proc.send_signal(sig)
            await asyncio.sleep(0.1)
            assert proc.returncode is None, "exited before the drain timeout although nothing was delivered"
            proc.send_signal(sig)
            assert await asyncio.wait_for(proc.wait(), 5) == 130
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert read_checkpoint(tmp_path / "state", "cli") == {}
