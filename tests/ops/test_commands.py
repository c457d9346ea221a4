"""``validate --check-connectivity``, ``backfill`` and ``checkpoint show|reset`` as real processes
against the Graph simulator and loopback receivers."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from agent.app import Agent
from agent.clock import SystemClock
from agent.commands import connectivity
from agent.config import load_settings
from agent.metrics import AgentMetrics
from agent.simulator.server import backdate
from agent.sinks.config import FileSinkConfig
from agent.timestamps import format_dt
from tests.fakes import hec as H
from tests.fakes.hec import FakeHec
from tests.fakes.syslog import TcpReceiver
from tests.ops.helpers import cli, env, write_toml
from tests.support.simulator import SimEnv, agent_config
from tests.support.sinks import RecordingSink
from tests.support.wait import until

SECRET_ENV = "OPS_TEST_GRAPH_SECRET"


def config(tmp_path: Path, sim: SimEnv, sinks: list[dict[str, Any]], **source: Any) -> Path:
    src = sim.source(client_secret={"env": SECRET_ENV}, **source)
    data = agent_config(tmp_path / "state", [src], sinks, log={"format": "json"})
    return write_toml(tmp_path / "agent.toml", data)


async def check_connectivity(cfg: Path, secret: str) -> tuple[int, str, str]:
    """``siem-agent validate --check-connectivity`` with the source's secret in ``SECRET_ENV``."""
    return await cli(
        "validate", "--check-connectivity", "--config", str(cfg), environ=env(**{SECRET_ENV: secret})
    )


def file_sink(path: Path, name: str = "file") -> dict[str, Any]:
    return {"type": "file", "name": name, "path": str(path), "codec": {"type": "json"}}


def lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(x) for x in path.read_bytes().splitlines()] if path.exists() else []


class TestCheckConnectivity:
    async def test_all_ok(self, tmp_path: Path, graph_sim: SimEnv) -> None:
        """Token, one alert with $top=1, every sink asked: each reported ok with what was checked, exit 0."""
        graph_sim.sim.add_alerts(3)
        rcv = TcpReceiver()
        port = await rcv.start()
        try:
            tcp = {"type": "tcp", "name": "syslog", "host": "127.0.0.1", "port": port}
            cfg = config(tmp_path, graph_sim, [file_sink(tmp_path / "out.jsonl"), tcp])
            code, out, err = await check_connectivity(cfg, "x")
            assert code == 1, "a wrong secret must fail the check"
            code, out, err = await check_connectivity(cfg, graph_sim.sim.client_secret)
        finally:
            await rcv.stop()
        assert code == 0, out + err
        assert "source sim: ok (token acquired; alerts_v2: 1 item(s))" in out
        assert f"sink file: ok ({tmp_path / 'out.jsonl'} writable)" in out, out
        assert "sink syslog: ok (reachable: connected to 127.0.0.1:" in out, out
        tops = [r.query.get("$top") for r in graph_sim.sim.graph_requests() if r.status == 200]
        assert tops == ["1"]
        assert rcv.accepted == 2, "each run opens the TCP sink once"

    async def test_failures_are_named_with_reasons(self, tmp_path: Path, graph_sim: SimEnv) -> None:
        """A rejected secret and an unreachable receiver: both FAILED with the reason, exit 1, no secret."""
        wrong = "wrong-secret-Zq81-do-not-print"
        rcv = TcpReceiver()
        port = await rcv.start()
        await rcv.stop()  # nothing listens on this port any more
        tcp = {"type": "tcp", "name": "syslog", "host": "127.0.0.1", "port": port}
        cfg = config(tmp_path, graph_sim, [file_sink(tmp_path / "out.jsonl"), tcp])
        code, out, err = await check_connectivity(cfg, wrong)
        assert code == 1
        assert (
            "source sim: FAILED (token request for tenant" in out and "invalid_client (AADSTS7000215)" in out
        )
        assert f"sink syslog: FAILED (connect to 127.0.0.1:{port} failed: ConnectionRefusedError" in out
        assert "sink file: ok (" in out and "writable)" in out
        assert wrong not in out + err and "Traceback" not in err

    async def test_http_sinks_are_asked_not_just_built(self, tmp_path: Path, graph_sim: SimEnv) -> None:
        """HTTP sinks are really contacted: a closed port fails (not "ok (opened)"), a live HEC passes."""
        hec = FakeHec()
        await hec.start()
        rcv = TcpReceiver()
        closed = await rcv.start()
        await rcv.stop()  # nothing listens on this port any more
        try:
            sinks = [
                {"type": "splunk_hec", "name": "hec", "url": hec.url, "token": H.TOKEN},
                {"type": "http", "name": "webhook", "url": f"http://127.0.0.1:{closed}/in"},
                {"type": "elasticsearch", "name": "es", "url": f"http://127.0.0.1:{closed}", "index": "a"},
            ]
            cfg = config(tmp_path, graph_sim, sinks)
            code, out, err = await check_connectivity(cfg, graph_sim.sim.client_secret)
        finally:
            await hec.stop()
        assert code == 1, out + err
        assert f"sink hec: ok (reachable: HEC health {hec.url}/services/collector/health: HTTP 200" in out
        assert hec.received == []
        refused = f"cannot connect to 127.0.0.1:{closed}"
        assert f"sink webhook: FAILED (HEAD http://127.0.0.1:{closed}/in: {refused}" in out, out
        assert f"sink es: FAILED (GET http://127.0.0.1:{closed}/: {refused}" in out, out
        leaked = H.TOKEN in out + err
        assert not leaked, "the token leaked into the command's output"
        assert "Traceback" not in err

    async def test_an_unexpected_sink_error_is_a_failed_line(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A sink whose ``healthcheck`` raises something other than an agent error (a bug) gives one
        FAILED line naming the exception's type, not a traceback."""

        class Broken(RecordingSink):
            async def healthcheck(self) -> str:
                raise RuntimeError("sink bug")

        monkeypatch.setattr(connectivity, "build_sink", lambda _cfg, _ctx: Broken("file"))
        cfg = FileSinkConfig(type="file", name="file", path=str(tmp_path / "out.jsonl"))
        check = await connectivity.check_sink(cfg, SystemClock(), AgentMetrics(CollectorRegistry()))
        assert check.line() == "sink file: FAILED (unexpected RuntimeError)"


class TestBackfill:
    async def test_replays_exactly_the_window_and_leaves_live_state_alone(
        self, tmp_path: Path, graph_sim: SimEnv
    ) -> None:
        """Alerts in [since, until) arrive once, each fetched once; others do not; live checkpoint intact;
        progress is logged (not a TTY) with the total Graph counted."""
        sim = graph_sim.sim
        before = sim.add_alerts(4, when=backdate(3 * 3600))
        inside = [a for i in range(45) for a in sim.add_alerts(1, when=backdate(2 * 3600 - 7 * i))]
        after = sim.add_alerts(4, when=backdate(600))
        out = tmp_path / "out.jsonl"
        # page_size 10 and max_pages_per_window 2: five pages, read without offsets or re-reads.
        cfg = config(tmp_path, graph_sim, [file_sink(out)], page_size=10, max_pages_per_window=2)
        live = tmp_path / "state" / "test.checkpoint.json"
        live.parent.mkdir(parents=True)
        seen = {a["id"]: a["lastUpdateDateTime"] for a in inside}  # the live agent "already sent" them
        doc = {"version": 1, "agent": "test", "written_at": format_dt(backdate(0)), "streams": {}}
        doc["streams"]["sim/alerts_v2/all"] = {"cursor": inside[0]["lastUpdateDateTime"], "seen": seen}
        live.write_bytes(orjson.dumps(doc))
        original = live.read_bytes()
        since = format_dt(backdate(2 * 3600) - timedelta(minutes=5))
        until = format_dt(backdate(3600))
        code, stdout, err = await cli(
            "backfill",
            "--config",
            str(cfg),
            "--since",
            since,
            "--until",
            until,
            environ=env(**{SECRET_ENV: sim.client_secret}),
        )
        assert code == 0, stdout + err
        got = [a["id"] for a in lines(out)]
        assert sorted(got) == sorted(a["id"] for a in inside), "not exactly the window, once each"
        assert not {a["id"] for a in before + after} & set(got)
        assert live.read_bytes() == original, "backfill touched the live checkpoint"
        # Fetched = forwarded + duplicates: the alert at each of the four page cuts is read twice.
        counts = re.search(r"stream sim/alerts_v2/all: (\d+) fetched, 45 forwarded, (\d+) duplicates", stdout)
        assert counts and int(counts.group(1)) == 45 + int(counts.group(2)) and int(counts.group(2)) == 4, (
            stdout
        )
        assert "sink file: 45 sent, 0 dead-lettered" in stdout
        filters = [r.query.get("$filter", "") for r in sim.graph_requests()]
        assert len(filters) == 5  # ceil(45 / 10): nothing read twice
        assert filters[0].endswith(f"lastUpdateDateTime lt {until}")
        assert all(" lt " in f for f in filters), "backfill must only read bounded windows"
        progress = [orjson.loads(line) for line in err.splitlines() if "Backfill progress." in line]
        assert progress and progress[-1]["done"] == 45 and progress[-1]["total"] == 45, err[-2000:]

    async def test_bad_window_is_a_usage_error(self, tmp_path: Path, graph_sim: SimEnv) -> None:
        cfg = config(tmp_path, graph_sim, [file_sink(tmp_path / "o")])
        e = env(**{SECRET_ENV: graph_sim.sim.client_secret})
        code, _, err = await cli("backfill", "--config", str(cfg), "--since", "yesterday", environ=e)
        assert code == 2 and "not an ISO-8601 date or time: 'yesterday'" in err
        code, _, err = await cli(
            "backfill", "--config", str(cfg), "--since", "2026-01-02", "--until", "2026-01-01", environ=e
        )
        assert code == 2 and "is not before --until" in err
        assert not graph_sim.sim.requests, "a usage error must not reach Graph"


class TestCheckpointCommands:
    def _write(self, tmp_path: Path) -> Path:
        """Checkpoints of sources ``a`` and ``b`` (not configured); the path of ``a``'s."""
        streams = {
            "a/alerts_v2/all": {"cursor": format_dt(backdate(120)), "seen": {"x": format_dt(backdate(120))}},
            "b/alerts_v2/all": {"cursor": None, "seen": {}},
        }
        for name, body in streams.items():
            path = tmp_path / "state" / "sources" / name.split("/")[0] / "checkpoint.json"
            path.parent.mkdir(parents=True)
            doc = {
                "version": 1,
                "agent": "test",
                "written_at": format_dt(backdate(0)),
                "streams": {name: body},
            }
            path.write_bytes(orjson.dumps(doc))
        return tmp_path / "state" / "sources" / "a" / "checkpoint.json"

    async def test_show_and_reset_one_stream_then_all(self, tmp_path: Path, graph_sim: SimEnv) -> None:
        """show prints cursor, seen and lag; reset --stream removes one; reset moves the file aside."""
        path = self._write(tmp_path)
        cfg = config(tmp_path, graph_sim, [file_sink(tmp_path / "o")])
        e = env(**{SECRET_ENV: "unused"})
        code, out, _ = await cli("checkpoint", "show", "--config", str(cfg), environ=e)
        assert code == 0
        assert "a/alerts_v2/all: cursor 20" in out and "1 seen, lag 12" in out  # ~120 s
        assert "b/alerts_v2/all: cursor -, 0 seen, lag -" in out
        code, out, _ = await cli("checkpoint", "show", "--json", "--config", str(cfg), environ=e)
        report = orjson.loads(out)
        assert 119 <= report["sources"]["a"]["streams"]["a/alerts_v2/all"]["lag_secs"] < 180
        assert report["sources"]["a"]["shard"] is None and report["sources"]["sim"]["shard"] == 0
        code, out, err = await cli("checkpoint", "reset", "--stream", "nope", "--config", str(cfg), environ=e)
        assert code == 74 and "has no stream 'nope'" in err
        code, out, _ = await cli(
            "checkpoint", "reset", "--stream", "a/alerts_v2/all", "--config", str(cfg), environ=e
        )
        assert code == 0 and "stream a/alerts_v2/all removed" in out
        assert list(orjson.loads(path.read_bytes())["streams"]) == []
        b = path.parent.parent / "b" / "checkpoint.json"
        assert list(orjson.loads(b.read_bytes())["streams"]) == ["b/alerts_v2/all"]
        code, out, _ = await cli("checkpoint", "reset", "--config", str(cfg), environ=e)
        assert code == 0 and "checkpoint moved aside to" in out
        assert not path.exists() and len(list(path.parent.glob("checkpoint.json.reset-*"))) == 1
        assert not b.exists() and len(list(b.parent.glob("checkpoint.json.reset-*"))) == 1
        code, out, _ = await cli("checkpoint", "show", "--config", str(cfg), environ=e)
        assert code == 0 and "no checkpoint yet" in out

    async def test_show_and_reset_need_no_secret(self, tmp_path: Path, graph_sim: SimEnv) -> None:
        """With the recommended ``{ credential = … }`` and no ``$CREDENTIALS_DIRECTORY`` (an admin shell),
        ``checkpoint show``/``reset`` still work: they read only ``state_dir`` and ``name``."""
        path = self._write(tmp_path)
        src = graph_sim.source(client_secret={"credential": "graph-secret"})
        data = agent_config(tmp_path / "state", [src], [file_sink(tmp_path / "o")])
        cfg = write_toml(tmp_path / "agent.toml", data)
        environ = {k: v for k, v in env().items() if k != "CREDENTIALS_DIRECTORY"}
        code, _, err = await cli("validate", "--config", str(cfg), environ=environ)
        assert code == 78 and "CREDENTIALS_DIRECTORY is not set" in err
        code, out, err = await cli("checkpoint", "show", "--config", str(cfg), environ=environ)
        assert code == 0 and "a/alerts_v2/all: cursor 20" in out, err
        code, out, err = await cli("checkpoint", "reset", "--config", str(cfg), environ=environ)
        assert code == 0 and "checkpoint moved aside to" in out and not path.exists(), err

    async def test_reset_refused_while_the_agent_runs(self, tmp_path: Path, graph_sim: SimEnv) -> None:
        """The running agent holds the state lock: reset exits 74 and changes nothing; a second agent too."""
        path = self._write(tmp_path)
        original = path.read_bytes()
        cfg = config(tmp_path, graph_sim, [file_sink(tmp_path / "o")])
        settings = load_settings(
            data=agent_config(tmp_path / "state", [graph_sim.source()], [file_sink(tmp_path / "o")])
        )
        agent = Agent(settings)
        task = asyncio.create_task(agent.run())
        try:
            await until(lambda: agent.lanes != [], what="agent started")
            code, _, err = await cli(
                "checkpoint", "reset", "--config", str(cfg), environ=env(**{SECRET_ENV: "x"})
            )
            with pytest.raises(Exception, match="is locked: an agent with this state_dir and name"):
                await Agent(settings).run()
        finally:
            agent.request_stop()
            assert await asyncio.wait_for(task, 15) == 0
        assert code == 74 and "is locked" in err
        assert path.exists() and not list(path.parent.glob("*.reset-*"))
        assert orjson.loads(original)["streams"]["a/alerts_v2/all"] is not None
