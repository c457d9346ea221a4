"""Fixtures of the reliability suite: the shared ones (graph_sim, rsyslog, syslog_ng) plus osmem-server."""

from __future__ import annotations

from tests.fakes.osmem import osmem

__all__ = ["osmem"]
