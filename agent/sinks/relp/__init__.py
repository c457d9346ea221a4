"""RELP (Reliable Event Logging Protocol) sink: frames, one client session, and the sink."""

from __future__ import annotations

from agent.sinks.relp.sink import RelpSink

__all__ = ["RelpSink"]
