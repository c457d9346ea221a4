"""Claim (issue #15): the ops port cannot exhaust the agent's file descriptors.

The real agent process runs with a 256-descriptor limit (``RLIMIT_NOFILE``) and forwards alerts to a
file sink. From outside, 300 idle connections and 100 half-sent requests (headers never finished) are
opened to its ``/metrics`` port and kept open. Asserted: ``/metrics`` and ``/healthz`` still answer;
new alerts are still delivered and committed (the checkpoint journal still gets written, where
exhaustion used to stop the agent with exit 74); the idle and half-sent connections are closed by the
agent (idle ones once the header deadline passes) and its descriptors stay well below the limit; a
graceful stop exits 0. Every loop is bounded; only 127.0.0.1.

Runtime: about 10 s.
"""

from __future__ import annotations

import contextlib
import resource
import socket
from pathlib import Path

from agent.ops import HEADER_TIMEOUT_SECS
from tests.support.agent_process import (
    AgentProcess,
    agent_settings,
    fast_source,
    http_get_async,
    read_checkpoint,
    read_jsonl,
    write_config,
)
from tests.support.simulator import SimEnv
from tests.support.wait import until

LIMIT = 256
IDLE = 300
HALF_SENT = 100


def limit_descriptors() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, LIMIT))


def open_connections(port: int, n: int, first_bytes: bytes = b"") -> list[socket.socket]:
    """``n`` connections to the port (non-blocking); each sends ``first_bytes`` if any."""
    out = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        out.append(s)
    for s in out:
        if first_bytes:
            with contextlib.suppress(OSError):  # not connected yet, or already dropped: both fine
                s.send(first_bytes)
    return out


def open_descriptors(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def closed_by_peer(s: socket.socket) -> bool:
    try:
        return s.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True  # reset


async def test_idle_and_half_sent_connections_do_not_exhaust_the_agent(
    tmp_path: Path, graph_sim: SimEnv
) -> None:
    """400 hostile connections against a 256-descriptor agent: it keeps serving, forwarding, committing."""
    graph_sim.sim.add_alerts(10)
    out = tmp_path / "out.jsonl"
    sink = {"type": "file", "name": "file", "path": str(out), "codec": {"type": "json"}}
    settings = agent_settings(tmp_path / "state", [fast_source(graph_sim.source())], [sink], http={"port": 0})
    agent = AgentProcess(
        write_config(tmp_path / "agent.toml", settings), tmp_path / "agent.log", preexec_fn=limit_descriptors
    )
    sockets: list[socket.socket] = []
    agent.start()
    try:
        port = await agent.ops_port()
        await until(lambda: len(read_jsonl(out)) >= 10, 20, "the first alerts")
        sockets += open_connections(port, IDLE)
        sockets += open_connections(port, HALF_SENT, b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        status, body = await http_get_async(port, "/metrics")
        assert status == 200 and "siem_agent_checkpoint_writes_total" in body
        assert (await http_get_async(port, "/healthz"))[0] == 200
        new = {a["id"] for a in graph_sim.sim.add_alerts(10)}

        def committed() -> bool:
            seen = read_checkpoint(tmp_path / "state", "rel").get("sim/alerts_v2/all", {}).get("seen", {})
            return new <= set(seen)

        await until(
            lambda: new <= {r["id"] for r in read_jsonl(out)} and committed(), 20, "new alerts committed"
        )
        assert open_descriptors(agent.pid) < LIMIT - 16, "the agent came close to its descriptor limit"
        # Idle connections are closed by the agent itself once the header deadline passes.
        late = open_connections(port, 5)
        sockets += late
        await until(
            lambda: all(closed_by_peer(s) for s in late), HEADER_TIMEOUT_SECS + 10, "idle ones closed"
        )
        assert agent.alive(), agent.log_text()[-3000:]
        assert (await http_get_async(port, "/healthz"))[0] == 200
        assert await agent.stop() == 0
    finally:
        for s in sockets:
            s.close()
        agent.kill()
    assert "Traceback" not in agent.log_text() and "Too many open files" not in agent.log_text()
