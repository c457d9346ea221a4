"""Shared fixtures. Each family of fixtures lives in its own module; import it here."""

from __future__ import annotations

import pytest

from tests.fakes.proxy import clear_proxy_env
from tests.receivers.fixtures import rsyslog, syslog_ng
from tests.support.simulator import graph_sim, tls_files

__all__ = ["graph_sim", "rsyslog", "syslog_ng", "tls_files"]


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test talks to 127.0.0.1 only, and the agent honours proxy variables (in-process and in the
    agent processes tests start): a proxy set in the CI environment must not interfere."""
    clear_proxy_env(monkeypatch)
