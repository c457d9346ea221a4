"""Helpers for agents run in the test's own process: a Graph source config, a JSON-lines file sink,
its lines, and a run that stops once a condition holds."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson

from agent.app import Agent
from agent.sources.config import GraphSecuritySourceConfig
from tests.support.wait import until


def lines(path: Path) -> list[dict[str, object]]:
    return [orjson.loads(x) for x in path.read_bytes().splitlines()] if path.exists() else []


def file_sink(path: Path) -> dict[str, object]:
    return {
        "type": "file",
        "name": "file",
        "path": str(path),
        "codec": {"type": "json"},
        "batch": {"timeout_secs": 0},
    }


async def run_until(agent: Agent, cond: object, timeout: float = 15) -> int:
    task = asyncio.create_task(agent.run())
    try:
        await until(cond, timeout)  # type: ignore[arg-type]
    finally:
        agent.request_stop()
    return await asyncio.wait_for(task, 10)


def graph_source(name: str, tenant: str = "t", client: str = "app", **kw: Any) -> GraphSecuritySourceConfig:
    """A Graph source config of ``tenant`` and app ``client`` (a placeholder secret)."""
    return GraphSecuritySourceConfig(
        type="graph_security", name=name, tenant_id=tenant, client_id=client, client_secret="s", **kw
    )
