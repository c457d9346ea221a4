"""Shared bits of the operations tests: configs as TOML files, the CLI as a real process, HTTP reads."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from prometheus_client.parser import text_string_to_metric_families

EXE = [sys.executable, "-m", "agent.cli"]


def _value(value: Any) -> str:
    if isinstance(value, dict):
        inner = ", ".join(f"{k} = {_value(v)}" for k, v in value.items() if v is not None)
        return "{ " + inner + " }" if inner else "{}"
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return orjson.dumps(str(value) if isinstance(value, Path) else value).decode()


def write_toml(path: Path, data: dict[str, Any]) -> Path:
    """A settings dict as TOML (nested tables inline, arrays of tables as arrays of inline tables)."""
    path.write_text("".join(f"{k} = {_value(v)}\n" for k, v in data.items() if v is not None))
    return path


def env(**extra: str) -> dict[str, str]:
    """The environment without ``SIEM_AGENT_*`` overrides, plus ``extra``."""
    out = {k: v for k, v in os.environ.items() if not k.startswith(("SIEM_AGENT_", "NOTIFY_", "WATCHDOG_"))}
    out.update(extra)
    return out


async def cli(*args: str, environ: dict[str, str] | None = None, timeout: float = 60) -> tuple[int, str, str]:
    """Run ``siem-agent ARGS`` to completion without blocking the loop (the simulator runs in it)."""
    proc = await asyncio.create_subprocess_exec(
        *EXE,
        *args,
        env=environ if environ is not None else env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return resp.status, await resp.text()


def sample(text: str, name: str, **labels: str) -> float | None:
    """One sample's value from Prometheus text exposition (``None`` when absent)."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return None
