"""The real process under a systemd-like supervisor: sd_notify messages, SIGHUP reopening, SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import socket
from pathlib import Path
from typing import Any

import orjson

from tests.ops.helpers import EXE, env, write_toml
from tests.support.simulator import SimEnv, agent_config
from tests.support.wait import until


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(x) for x in path.read_bytes().splitlines()] if path.exists() else []


class TestSystemdAndSighup:
    async def test_notify_watchdog_sighup_and_stop(self, tmp_path: Path, graph_sim: SimEnv) -> None:
        """READY=1 once started, WATCHDOG=1 pings, SIGHUP moves output and log to fresh files without
        losing a line, STOPPING=1 on SIGTERM, exit 0."""
        sim = graph_sim.sim
        sim.add_alerts(10)
        out, logfile = tmp_path / "alerts.jsonl", tmp_path / "agent.log"
        sink = {"type": "file", "name": "file", "path": str(out), "codec": {"type": "json"}}
        data = agent_config(
            tmp_path / "state",
            [graph_sim.source(client_secret={"env": "OPS_SECRET"})],
            [{**sink, "batch": {"timeout_secs": 0}}],
            log={"format": "json", "path": str(logfile)},
        )
        cfg = write_toml(tmp_path / "agent.toml", data)
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(tmp_path / "notify.sock"))
        notify.setblocking(False)
        messages: list[bytes] = []
        environ = env(
            OPS_SECRET=sim.client_secret,
            NOTIFY_SOCKET=str(tmp_path / "notify.sock"),
            WATCHDOG_USEC="200000",  # ping every 0.1 s
        )
        proc = await asyncio.create_subprocess_exec(
            *EXE, "run", "--config", str(cfg), env=environ, stderr=asyncio.subprocess.PIPE
        )

        def received() -> list[bytes]:
            for _ in range(1000):
                try:
                    messages.append(notify.recv(4096))
                except BlockingIOError:
                    break
            return messages

        try:
            await until(lambda: any(m.startswith(b"READY=1") for m in received()), 20, "READY=1")
            await until(lambda: received().count(b"WATCHDOG=1") >= 2, 10, "two WATCHDOG=1")
            await until(lambda: len(read_jsonl(out)) >= 10, 20, "first 10 alerts")
            first_log = logfile.read_bytes()
            out.rename(tmp_path / "alerts.jsonl.1")
            logfile.rename(tmp_path / "agent.log.1")
            proc.send_signal(signal.SIGHUP)
            await until(lambda: b"Reopened files." in (logfile.read_bytes() if logfile.exists() else b""), 10)
            sim.add_alerts(10)
            await until(lambda: len(read_jsonl(out)) >= 10, 20, "10 alerts in the new file")
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(proc.wait(), 15)
            await until(lambda: b"STOPPING=1" in received(), 5, "STOPPING=1")
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            notify.close()
        assert code == 0
        assert messages[0] == b"READY=1\nSTATUS=1 source(s), 1 sink(s)"
        assert messages.index(b"STOPPING=1") > messages.index(b"WATCHDOG=1")
        old, new = read_jsonl(tmp_path / "alerts.jsonl.1"), read_jsonl(out)
        assert len(old) + len(new) == 20 and len({a["id"] for a in old + new}) == 20, "lost or doubled"
        assert {a["id"] for a in new} == {a["id"] for a in list(sim.alerts.values())[10:]}
        assert b"Agent started." in first_log and b"Reopened files." not in first_log
        new_log = [orjson.loads(x) for x in logfile.read_bytes().splitlines()]
        assert new_log[0]["message"] == "Reopened files." and new_log[-1]["level"] == "info"
        assert proc.stderr is not None
        assert (await proc.stderr.read()) == b"", "with log.path set nothing goes to stderr"
