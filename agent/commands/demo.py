"""``siem-agent demo``: the real agent against the built-in Graph simulator, forwarding to stdout.

The simulator serves HTTPS on 127.0.0.1 with a throwaway CA, creates ten alerts and then new ones
(and updates) at ``rate`` per second; the agent polls it every two seconds with the full pipeline —
MSAL token, paging, dedup, checkpoint in a temporary state directory — and writes each alert to
stdout in ``codec``. Everything it creates is removed when it stops.

Write-back is on, on a free loopback port with a random demo token: once the agent runs, stderr shows
a ready-to-run ``curl`` that resolves one of the simulator's alerts through the API; the next poll
brings the alert back marked as the agent's own write (CEF ``act=siem-agent-writeback``).
"""

from __future__ import annotations

import asyncio
import secrets
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

from agent.app import Agent
from agent.config import load_settings
from agent.simulator.server import GraphSimulator, server_ssl_context
from agent.simulator.tls import make_tls


def demo_config(
    sim: GraphSimulator, base: str, ca_cert: Path, state_dir: Path, codec: str, token: str
) -> dict[str, Any]:
    """One Graph source reading ``sim`` at ``base``, one stdout sink in ``codec``, write-back on with
    ``token``."""
    return {
        "name": "demo",
        "state_dir": str(state_dir),
        "shutdown_timeout_secs": 5,
        "http": {"port": 0},
        "sources": [
            {
                "type": "graph_security",
                "name": "simulator",
                "tenant_id": sim.tenant_id,
                "client_id": sim.client_id,
                "client_secret": sim.client_secret,
                "authority_url": base,
                "graph_url": base,
                "ca_bundle": str(ca_cert),
                "poll_interval_secs": 2,
                "overlap_secs": 60,
                "initial_lookback_secs": 3600,
            }
        ],
        "sinks": [
            {
                "type": "stdout",
                "name": "stdout",
                "codec": {"type": codec},
                "batch": {"timeout_secs": 0.2},
            }
        ],
        "writeback": {"enabled": True, "port": 0, "tokens": [{"name": "demo", "token": token}]},
    }


def curl_line(port: int, token: str, alert_id: str) -> str:
    """A ready-to-run curl that resolves ``alert_id`` through the demo's write-back API."""
    body = (
        '{"status": "resolved", "classification": "truePositive", "determination": "malware", '
        '"comment": "Closed from the siem-agent demo"}'
    )
    url = f"http://127.0.0.1:{port}/v1/sources/simulator/alerts/{alert_id}"
    return (
        f"curl -sS -X PATCH -H {shlex.quote('Authorization: Bearer ' + token)} "
        f"-H 'Content-Type: application/json' -d {shlex.quote(body)} {url}"
    )


async def demo(codec: str, rate: float, duration: float) -> int:
    """Run until SIGTERM/SIGINT (or ``duration`` seconds when non-zero); return the exit code."""
    with tempfile.TemporaryDirectory(prefix="siem-agent-demo-") as tmp:
        tls = make_tls(Path(tmp) / "tls")
        sim = GraphSimulator()
        base = await sim.start(server_ssl_context(str(tls.cert), str(tls.key)))
        first = sim.add_alerts(10)[0]["id"]
        sim.start_generator(rate)
        token = "demo-" + secrets.token_urlsafe(18)
        settings = load_settings(data=demo_config(sim, base, tls.ca_cert, Path(tmp) / "state", codec, token))
        print(
            f"siem-agent demo: Graph simulator at {base}; forwarding {codec.upper()} to stdout. ^C stops.",
            file=sys.stderr,
        )

        def ready(agent: Agent) -> None:
            assert agent.writeback_port is not None
            print(
                "siem-agent demo: write-back API on 127.0.0.1:"
                f"{agent.writeback_port} (demo token {token}); resolve an alert in the simulator with:\n"
                f"  {curl_line(agent.writeback_port, token, first)}\n"
                "then GET the status URL it returns with the same Authorization header.",
                file=sys.stderr,
                flush=True,
            )

        agent = Agent(settings, on_ready=ready)
        agent.install_signal_handlers()
        if duration:
            asyncio.get_running_loop().call_later(duration, agent.request_stop)
        try:
            return await agent.run()
        finally:
            await sim.stop()
