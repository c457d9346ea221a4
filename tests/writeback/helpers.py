"""Shared pieces of the write-back tests: app tokens from the simulator, HTTP calls to the API, an
in-process agent with write-back enabled, configs for agent processes."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from agent.app import Agent
from agent.config import load_settings
from agent.simulator.server import GraphSimulator
from tests.support.agent_process import until_async
from tests.support.simulator import SimEnv
from tests.support.wait import until

TOKEN = "wb-test-token-Kq3v9-never-in-logs"
OTHER_TOKEN = "wb-other-token-Zz81-never-in-logs"


async def app_token(sim: GraphSimulator, ca: Path) -> str:
    """An access token from the simulator's token endpoint (client secret)."""
    form = {
        "grant_type": "client_credentials",
        "client_id": sim.client_id,
        "client_secret": sim.client_secret,
        "scope": f"{sim.base_url}/.default",
    }
    ctx = ssl.create_default_context(cafile=str(ca))
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{sim.base_url}/{sim.tenant_id}/oauth2/v2.0/token", data=form, ssl=ctx) as resp,
    ):
        return str((await resp.json())["access_token"])


async def graph(
    sim: GraphSimulator, ca: Path, method: str, path: str, body: Any = None, token: str | None = None
) -> tuple[int, Any]:
    """One call to the simulator's Graph side as the app."""
    token = token or await app_token(sim, ca)
    ctx = ssl.create_default_context(cafile=str(ca))
    async with (
        aiohttp.ClientSession() as http,
        http.request(
            method, sim.base_url + path, json=body, headers={"Authorization": f"Bearer {token}"}, ssl=ctx
        ) as resp,
    ):
        return resp.status, orjson.loads(await resp.read())


async def api(
    port: int,
    method: str,
    path: str,
    body: Any = None,
    token: str | None = TOKEN,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
    scheme: str = "http",
    ssl_context: ssl.SSLContext | None = None,
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """One call to the write-back API: status, JSON body (``{}`` when none), headers."""
    hdrs = dict(headers or {})
    if token is not None:
        hdrs["Authorization"] = f"Bearer {token}"
    data = raw if raw is not None else (orjson.dumps(body) if body is not None else None)
    if data is not None:
        hdrs.setdefault("Content-Type", "application/json")
    async with (
        aiohttp.ClientSession() as http,
        http.request(
            method, f"{scheme}://127.0.0.1:{port}{path}", data=data, headers=hdrs, ssl=ssl_context or False
        ) as resp,
    ):
        text = await resp.read()
        doc = orjson.loads(text) if text else {}
        return resp.status, doc, dict(resp.headers)


def writeback_table(**overrides: Any) -> dict[str, Any]:
    table: dict[str, Any] = {
        "enabled": True,
        "port": 0,
        "tokens": [{"name": "splunk", "token": TOKEN}, {"name": "sentinel", "token": OTHER_TOKEN}],
    }
    table.update(overrides)
    return table


@dataclass
class LiveAgent:
    """An agent running in this process, with write-back on."""

    agent: Agent
    task: asyncio.Task[int]
    out: Path

    @property
    def port(self) -> int:
        assert self.agent.writeback_port is not None
        return self.agent.writeback_port

    async def wait_state(
        self,
        request_id: str,
        state: str,
        timeout: float = 10.0,
        token: str = TOKEN,
        ssl_context: ssl.SSLContext | None = None,
    ) -> dict[str, Any]:
        """``wait_state`` on this agent's write-back port."""
        return await wait_state(self.port, request_id, state, timeout, token, ssl_context)


async def wait_state(
    port: int,
    request_id: str,
    state: str,
    timeout: float = 20.0,
    token: str = TOKEN,
    ssl_context: ssl.SSLContext | None = None,
) -> dict[str, Any]:
    """Ask GET /v1/requests/{id} (bounded by ``timeout``) until it reports ``state``; the last answer.
    Fails naming the state last seen."""
    seen: dict[str, Any] = {}
    scheme = "https" if ssl_context is not None else "http"

    async def reached() -> bool:
        nonlocal seen
        path = f"/v1/requests/{request_id}"
        _, seen, _ = await api(port, "GET", path, token=token, scheme=scheme, ssl_context=ssl_context)
        return seen.get("state") == state

    try:
        await until_async(reached, timeout, f"request {request_id} to reach {state}")
    except AssertionError:
        raise AssertionError(f"request {request_id} never reached {state}: {seen}") from None
    return seen


@contextlib.asynccontextmanager
async def live_agent(
    tmp_path: Path,
    env: SimEnv,
    writeback: dict[str, Any] | None = None,
    top: dict[str, Any] | None = None,
    more_sources: list[dict[str, Any]] | None = None,
    **source: Any,
) -> AsyncIterator[LiveAgent]:
    """Run an Agent in-process against ``env`` with a JSON file sink; stopped (exit 0) afterwards.
    ``top``: more top-level keys (e.g. ``shard``); ``more_sources``: further source tables."""
    out = tmp_path / "out.jsonl"
    data = {
        "name": "wb",
        "state_dir": str(tmp_path / "state"),
        "shutdown_timeout_secs": 5,
        "checkpoint_interval_secs": 0,
        "http": {"enabled": False},
        "sources": [
            env.source(
                **{"poll_interval_secs": 0.1, "backoff_base_secs": 0.05, "backoff_max_secs": 0.2, **source}
            )
        ],
        "sinks": [
            {
                "type": "file",
                "name": "file",
                "path": str(out),
                "codec": {"type": "json"},
                "batch": {"timeout_secs": 0.05},
            }
        ],
        "writeback": writeback if writeback is not None else writeback_table(),
        **(top or {}),
    }
    data["sources"] += more_sources or []
    agent = Agent(load_settings(data=data))
    task = asyncio.create_task(agent.run(), name="agent")
    await until(lambda: agent.writeback_port is not None or task.done(), 10, "the write-back API")
    if task.done():
        task.result()
    live = LiveAgent(agent, task, out)
    try:
        yield live
    finally:
        agent.request_stop()
        code = await asyncio.wait_for(task, 15)
        assert code == 0


def delivered(out: Path) -> list[dict[str, Any]]:
    """Complete JSON lines of the file sink."""
    if not out.exists():
        return []
    return [orjson.loads(line) for line in out.read_bytes().split(b"\n")[:-1]]
