"""Fixtures: the Graph simulator over real HTTPS on 127.0.0.1, and agent configs pointing at it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.simulator.server import GraphSimulator, server_ssl_context
from agent.simulator.tls import TlsFiles, make_tls


@dataclass
class SimEnv:
    """A running simulator plus what a config needs to reach it."""

    sim: GraphSimulator
    base_url: str
    tls: TlsFiles

    def source(self, **overrides: Any) -> dict[str, Any]:
        """A graph_security source table for this simulator."""
        table: dict[str, Any] = {
            "type": "graph_security",
            "name": "sim",
            "tenant_id": self.sim.tenant_id,
            "client_id": self.sim.client_id,
            "client_secret": self.sim.client_secret,
            "authority_url": self.base_url,
            "graph_url": self.base_url,
            "ca_bundle": str(self.tls.ca_cert),
            "poll_interval_secs": 0.05,
            "overlap_secs": 60,
            "initial_lookback_secs": 3600,
            "page_size": 20,
        }
        table.update(overrides)
        return table


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture
async def graph_sim(tls_files: TlsFiles) -> AsyncIterator[SimEnv]:
    sim = GraphSimulator()
    base = await sim.start(server_ssl_context(str(tls_files.cert), str(tls_files.key)))
    try:
        yield SimEnv(sim, base, tls_files)
    finally:
        await sim.stop()


def agent_config(
    state_dir: Path, sources: list[dict[str, Any]], sinks: list[dict[str, Any]], **top: Any
) -> dict[str, Any]:
    """A complete settings dict."""
    data: dict[str, Any] = {
        "name": "test",
        "state_dir": str(state_dir),
        "shutdown_timeout_secs": 5,
        "checkpoint_interval_secs": 0,
        "http": {"enabled": False},
        "sources": sources,
        "sinks": sinks,
    }
    data.update(top)
    return data
