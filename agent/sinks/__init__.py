"""Sinks: deliver serialized events to a receiver and report what was delivered.

``SINKS`` is the closed registry from the config ``type`` tag to the sink class.
"""

from __future__ import annotations

from agent.sinks.base import HEALTHCHECK_TIMEOUT_SECS, Reopenable, SendResult, Sink, SinkContext, SinkFactory
from agent.sinks.config import SinkConfig
from agent.sinks.file import FileSink
from agent.sinks.http import ElasticsearchSink, HttpSink, LogsIngestionSink, SplunkHecSink
from agent.sinks.relp import RelpSink
from agent.sinks.stdout import StdoutSink
from agent.sinks.tcp import TcpSink
from agent.sinks.udp import UdpSink

SINKS: dict[str, SinkFactory] = {
    "stdout": StdoutSink,
    "file": FileSink,
    "tcp": TcpSink,
    "relp": RelpSink,
    "udp": UdpSink,
    "splunk_hec": SplunkHecSink,
    "elasticsearch": ElasticsearchSink,
    "logs_ingestion": LogsIngestionSink,
    "http": HttpSink,
}


def build_sink(config: SinkConfig, ctx: SinkContext) -> Sink:
    """Build the sink a config selects."""
    return SINKS[config.type](config, ctx)


__all__ = [
    "HEALTHCHECK_TIMEOUT_SECS",
    "SINKS",
    "Reopenable",
    "SendResult",
    "Sink",
    "SinkContext",
    "build_sink",
]
