"""HTTP sinks: Splunk HEC, Elasticsearch ``_bulk``, Azure Logs Ingestion and generic NDJSON."""

from __future__ import annotations

from agent.sinks.http.elasticsearch import ElasticsearchSink
from agent.sinks.http.generic import HttpSink
from agent.sinks.http.logs_ingestion import LogsIngestionSink
from agent.sinks.http.splunk_hec import SplunkHecSink

__all__ = ["ElasticsearchSink", "HttpSink", "LogsIngestionSink", "SplunkHecSink"]
