"""The unit's ``MemoryDenyWriteExecute=yes`` does not break the agent.

systemd enforces it with a seccomp filter refusing writable+executable mappings; Linux >= 6.3 offers
the same rule per process as ``prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN)``. The agent runs under it
here — certificate client assertions signed by ``cryptography`` (through MSAL), TLS to Graph, aiohttp,
orjson, a TCP sink — and first proves the rule is really in force (a W+X mapping fails). cffi
*callbacks* would fail under it; nothing in the agent's dependency tree uses them.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from tests.fakes.syslog import TcpReceiver
from tests.graph.test_auth import PASSPHRASE, make_cert
from tests.ops.helpers import env, write_toml
from tests.support.simulator import SimEnv, agent_config

UNDER_MDWE = """
import ctypes, mmap, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
    sys.exit(f"prctl(PR_SET_MDWE) failed: errno {ctypes.get_errno()}")
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    sys.exit("MDWE not in force: a W+X mapping succeeded")
except PermissionError:
    pass
from agent.cli import main
sys.exit(main(sys.argv[1:]))
"""


class TestMemoryDenyWriteExecute:
    async def test_agent_works_under_mdwe(self, tmp_path: Path, graph_sim: SimEnv) -> None:
        key, cert, pem = make_cert(tmp_path)
        graph_sim.sim.register_certificate(pem)
        graph_sim.sim.add_alerts(1)
        rcv = TcpReceiver()
        port = await rcv.start()
        src = graph_sim.source(
            client_secret=None,
            credential={
                "type": "certificate",
                "private_key_path": str(key),
                "certificate_path": str(cert),
                "private_key_passphrase": PASSPHRASE,
            },
        )
        src = {k: v for k, v in src.items() if v is not None}
        sink = {"type": "tcp", "name": "syslog", "host": "127.0.0.1", "port": port}
        cfg = write_toml(tmp_path / "agent.toml", agent_config(tmp_path / "state", [src], [sink]))
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            UNDER_MDWE,
            "validate",
            "--check-connectivity",
            "--config",
            str(cfg),
            env=env(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        await rcv.stop()
        assert proc.returncode == 0, out.decode() + err.decode()
        assert b"source sim: ok (token acquired; alerts_v2: 1 item(s))" in out
        assert b"sink syslog: ok" in out
        assert [r.status for r in graph_sim.sim.token_requests()] == [200], "certificate assertion accepted"
