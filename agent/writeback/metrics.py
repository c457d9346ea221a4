"""Metrics of the write-back path, on the agent's registry (docs/operations.md lists them)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class WritebackMetrics:
    """Registered once per agent when write-back is enabled."""

    def __init__(self, registry: CollectorRegistry) -> None:
        p = "siem_agent_writeback_"
        self.api_requests = Counter(
            p + "api_requests_total",
            "Write-back API calls by source and HTTP status (202 queued; 400, 404, 408, 413, 503 refused; "
            '401 and unknown sources count under source="-").',
            ["source", "status"],
            registry=registry,
        )
        self.results = Counter(
            p + "requests_total",
            "Write-back requests finished, by source and result (done, failed).",
            ["source", "result"],
            registry=registry,
        )
        self.queued = Gauge(
            p + "queue_requests", "Write-back requests waiting for Graph.", ["source"], registry=registry
        )
        self.connections_refused = Counter(
            p + "connections_refused_total",
            "Write-back API connections closed by the listener, by reason (connection_cap, "
            "header_timeout, request_timeout).",
            ["reason"],
            registry=registry,
        )
        self.own_versions = Counter(
            p + "own_versions_total",
            "Alert or incident versions produced by the agent's own writes, as the poller saw them: "
            "marked (forwarded with the siemAgent mark) or skipped (forward_own_updates = false).",
            ["action"],
            registry=registry,
        )
