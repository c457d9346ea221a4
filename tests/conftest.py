"""Shared fixtures. Each family of fixtures lives in its own module; import it here."""

from __future__ import annotations

from tests.receivers.fixtures import rsyslog, syslog_ng
from tests.support.simulator import graph_sim, tls_files

__all__ = ["graph_sim", "rsyslog", "syslog_ng", "tls_files"]
