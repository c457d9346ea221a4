"""No secret value ever reaches the logs, the metrics or the state directory — also on error paths.

One real ``siem-agent run`` at debug level with known secret values in every place a secret can be
configured: a Graph source that works, a Graph source whose secret is rejected (auth failure), and
sinks that fail (a HEC token the receiver refuses; Elasticsearch, HTTP and Logs Ingestion endpoints
that refuse connections). The test first proves the error paths ran, then scans everything.
"""

from __future__ import annotations

import asyncio
import base64
import re
import signal
from pathlib import Path

from agent.simulator.server import GraphSimulator, server_ssl_context
from tests.fakes.hec import FakeHec
from tests.ops.helpers import EXE, env, get, write_toml
from tests.support.simulator import SimEnv, agent_config
from tests.support.wait import until

SECRETS = {
    "WRONG_GRAPH": "graph-secret-rejected-7Hq2-must-not-leak",
    "HEC_TOKEN": "5e8d1c0f-aaaa-bbbb-cccc-hec-must-not-leak",
    "ES_KEY": "es-api-key-V2x9-must-not-leak",
    "BEARER": "bearer-tok-P0q1-must-not-leak",
    "HEADER": "x-api-key-M4n5-must-not-leak",
    "BASIC_PW": "basic-pw-K7j8-must-not-leak",
    "DCR_SECRET": "entra-secret-L2k3-must-not-leak",
}


def closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def forms(value: str) -> list[str]:
    """The value and the encodings a careless log line could carry it in."""
    out = [value, base64.b64encode(value.encode()).decode().rstrip("=")]
    out.append(base64.b64encode(f"siem:{value}".encode()).decode().rstrip("="))
    return out


class TestSecretsNeverLeak:
    async def test_logs_metrics_and_state_are_clean(self, tmp_path: Path, graph_sim: SimEnv) -> None:
        good = graph_sim.sim
        good.add_alerts(5)
        other = GraphSimulator(tenant_id="00000000-0000-4000-8000-0000000000b2", client_id="app-b")
        base_b = await other.start(server_ssl_context(str(graph_sim.tls.cert), str(graph_sim.tls.key)))
        hec = FakeHec()
        hec_url = await hec.start()
        dead = closed_port()
        fast = {
            "batch": {"timeout_secs": 0},
            "retry": {"initial_backoff_secs": 0.05, "max_backoff_secs": 0.2},
        }
        sinks = [
            {"type": "file", "name": "file", "path": str(tmp_path / "out.jsonl"), **fast},
            {"type": "splunk_hec", "name": "hec", "url": hec_url, "token": {"env": "HEC_TOKEN"}, **fast},
            {
                "type": "elasticsearch",
                "name": "es",
                "url": f"http://127.0.0.1:{dead}",
                "index": "alerts",
                "api_key": {"env": "ES_KEY"},
                **fast,
            },
            {
                "type": "http",
                "name": "bearer",
                "url": f"http://127.0.0.1:{dead}/in",
                "bearer_token": {"env": "BEARER"},
                "headers": {"X-Api-Key": {"env": "HEADER"}},
                **fast,
            },
            {
                "type": "http",
                "name": "basic",
                "url": f"http://127.0.0.1:{dead}/in",
                "username": "siem",
                "password": {"env": "BASIC_PW"},
                **fast,
            },
            {
                "type": "logs_ingestion",
                "name": "sentinel",
                "endpoint": f"http://127.0.0.1:{dead}",
                "dcr_immutable_id": "dcr-" + "0" * 32,
                "stream": "Custom-Alerts",
                "tenant_id": "t",
                "client_id": "c",
                "client_secret": {"env": "DCR_SECRET"},
                "authority_host": f"https://127.0.0.1:{dead}",
                **fast,
            },
        ]
        src_a = graph_sim.source(name="good", client_secret={"env": "GOOD_GRAPH"})
        src_b = graph_sim.source(
            name="bad",
            tenant_id=other.tenant_id,
            client_id=other.client_id,
            client_secret={"env": "WRONG_GRAPH"},
            authority_url=base_b,
            graph_url=base_b,
            backoff_base_secs=0.05,
            error_backoff_max_secs=0.2,
        )
        data = agent_config(
            tmp_path / "state",
            [src_a, src_b],
            sinks,
            shutdown_timeout_secs=1,
            log={"level": "debug", "format": "json"},
            http={"port": 0},
        )
        cfg = write_toml(tmp_path / "agent.toml", data)
        values = {**SECRETS, "GOOD_GRAPH": good.client_secret}
        logfile = tmp_path / "stderr.log"
        with logfile.open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                *EXE, "run", "--config", str(cfg), env=env(**values), stderr=err
            )
        log = logfile.read_text
        try:
            await until((tmp_path / "out.jsonl").exists, 20, "delivery through the good source")
            await until(lambda: "Token request rejected" in log(), 20, "Graph auth failure")
            await until(lambda: len(other.token_requests()) >= 3, 20, "repeated token requests")
            for name in ("hec", "es", "bearer", "basic", "sentinel"):
                await until(lambda n=name: f'"sink":"{n}"' in log() and "Send failed" in log(), 20, name)
            port = int(re.search(r'"message":"Serving /metrics.*?"port":(\d+)', log()).group(1))  # type: ignore[union-attr]
            status, metrics = await get(f"http://127.0.0.1:{port}/metrics")
            assert status == 200
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 15) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            await hec.stop()
            await other.stop()
        text = log()
        assert '"level":"debug"' in text, "debug logging was not on"
        assert "invalid_client" in text
        assert text.count("Token request rejected") == 1, "repeated identical errors are rate-limited"
        assert re.search(r'"sink":"hec".*"error":"[^"]*(403|token)', text, re.I), "HEC refusal not logged"
        state = "".join(p.read_text(errors="replace") for p in (tmp_path / "state").rglob("*") if p.is_file())
        for key, value in values.items():
            for form in forms(value):
                assert form not in text, f"{key} in logs"
                assert form not in metrics, f"{key} in metrics"
                assert form not in state, f"{key} in the state directory"
