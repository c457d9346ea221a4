"""``siem-agent demo``: a new user can try the write-back round trip without a tenant, from the printed curl."""

from __future__ import annotations

import asyncio
import shlex
import signal
import sys

from tests.ops.helpers import env
from tests.writeback.helpers import api, wait_state


async def _line_with(stream: asyncio.StreamReader, needle: str, timeout: float) -> str:
    async def scan() -> str:
        for _ in range(100_000):
            line = (await stream.readline()).decode()
            if not line:
                raise AssertionError(f"stream ended before {needle!r}")
            if needle in line:
                return line
        raise AssertionError("too many lines")

    return await asyncio.wait_for(scan(), timeout)


async def test_the_printed_curl_resolves_an_alert_that_comes_back_marked() -> None:
    """Run the demo, send the request its curl line describes: 202, done, and the alert is printed again
    (CEF) with act=siem-agent-writeback; ^C ends it with 0."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agent.cli",
        "demo",
        "--rate",
        "0.2",
        env=env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None and proc.stdout is not None
        line = await _line_with(proc.stderr, "curl -sS -X PATCH", 30)
        drain = asyncio.create_task(proc.stderr.read())  # the demo logs to stderr: never let the pipe fill
        args = shlex.split(line.strip())
        url = args[-1]
        token = args[args.index("-H") + 1].removeprefix("Authorization: Bearer ")
        body = args[args.index("-d") + 1]
        port = int(url.split(":")[2].split("/")[0])
        path = "/" + url.split("/", 3)[3]
        alert_id = path.rsplit("/", 1)[1]
        status, doc, _ = await api(port, "PATCH", path, raw=body.encode(), token=token)
        assert status == 202, doc
        await wait_state(port, doc["id"], "done", timeout=10, token=token)
        marked = await _line_with(proc.stdout, "act=siem-agent-writeback", 20)
        assert f"externalId={alert_id}" in marked and "cs2=resolved" in marked
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
        leaked = token.encode() in (await drain).replace(line.encode(), b"")
        assert not leaked, "the token leaked into the demo's output outside the curl line"
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
