"""Fixtures for the Graph source tests: simulators over HTTPS on 127.0.0.1 and the harness."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from agent.simulator.server import GraphSimulator, server_ssl_context
from agent.simulator.tls import TlsFiles
from tests.fakes.proxy import proxy
from tests.graph.harness import Harness

__all__ = ["proxy"]

SimFactory = Callable[..., Awaitable[GraphSimulator]]


@pytest.fixture
async def make_sim(tls_files: TlsFiles) -> AsyncIterator[SimFactory]:
    """Start simulators (one per tenant) and stop them all afterwards."""
    started: list[GraphSimulator] = []

    async def factory(**kwargs: object) -> GraphSimulator:
        sim = GraphSimulator(**kwargs)  # type: ignore[arg-type]
        await sim.start(server_ssl_context(str(tls_files.cert), str(tls_files.key)))
        started.append(sim)
        return sim

    try:
        yield factory
    finally:
        for sim in started:
            await sim.stop()


@pytest.fixture
async def harness(tmp_path: Path, make_sim: SimFactory) -> AsyncIterator[Harness]:
    """A harness whose sources are stopped at teardown (before the simulators stop)."""
    h = Harness(tmp_path / "state")
    try:
        yield h
    finally:
        await h.close()


@pytest.fixture
def ca(tls_files: TlsFiles) -> Path:
    """The throwaway CA that signed the simulator's certificate."""
    return tls_files.ca_cert
