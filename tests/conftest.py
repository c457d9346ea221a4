"""Shared fixtures. Each family of fixtures lives in its own module; import it here."""

from __future__ import annotations

import pytest

from tests.fakes.proxy import clear_proxy_env
from tests.receivers import binaries
from tests.receivers.fixtures import require_receivers, rsyslog, syslog_ng
from tests.support.simulator import graph_sim, tls_files

__all__ = ["graph_sim", "rsyslog", "syslog_ng", "tls_files"]


def pytest_report_header() -> list[str]:
    """Say once, at the top, whether the real receivers are there (the tests that need them skip, or
    fail under CI, with the same reason)."""
    found = {"rsyslogd": binaries.rsyslog(), "syslog-ng": binaries.syslog_ng()}
    missing = [name for name, program in found.items() if program is None]
    if not missing:
        return [f"test receivers: rsyslogd, syslog-ng from {binaries.cache_dir()}"]
    return [f"{binaries.unavailable_reason()} (missing: {', '.join(missing)})"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that use a receiver fixture are ``receivers`` tests (others carry the mark themselves)."""
    for item in items:
        if {"rsyslog", "syslog_ng"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.receivers)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("receivers") is not None:
        require_receivers()


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test talks to 127.0.0.1 only, and the agent honours proxy variables (in-process and in the
    agent processes tests start): a proxy set in the CI environment must not interfere."""
    clear_proxy_env(monkeypatch)
