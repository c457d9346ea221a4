"""All Prometheus metrics of one agent, on a registry passed in (never the global one).

Names follow ``siem_agent_<noun>_<unit>[_total]``; labels are low-cardinality (tenant, stream, sink,
reason, field) and never carry alert ids or secrets. With ``per_tenant=False`` (``[metrics]
per_tenant = false``) the ``tenant`` and ``stream`` labels of the source metrics take the one value
``_all`` (``agent.collapse``), so the series count does not grow with the number of tenants.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

from agent.collapse import Collapsed


class AgentMetrics:
    """The agent's metric objects. Build one per agent with its own ``CollectorRegistry``."""

    def __init__(self, registry: CollectorRegistry, per_tenant: bool = True) -> None:
        self.registry = registry
        self._refreshers: list[Callable[[], None]] = []
        #: The ``_all`` stand-ins' refreshes: after every other refresher, so they combine current values.
        self._collapse_refreshers: list[Callable[[], None]] = []
        ProcessCollector(registry=registry)  # process_cpu_seconds_total, process_resident_memory_bytes, ...
        PlatformCollector(registry=registry)
        p = "siem_agent_"
        # Sources.
        self.alerts_fetched = Counter(
            p + "alerts_fetched_total", "Alert versions read from the source.", ["stream"], registry=registry
        )
        self.alerts_new = Counter(
            p + "alerts_new_total",
            "Alert versions forwarded (not seen before).",
            ["stream"],
            registry=registry,
        )
        self.alerts_duplicate = Counter(
            p + "alerts_duplicate_total",
            "Alert versions skipped because they were already forwarded.",
            ["stream"],
            registry=registry,
        )
        self.graph_requests = Counter(
            p + "graph_requests_total",
            "HTTP requests to Graph and the token endpoint, by status class (2xx, 4xx, 5xx, error).",
            ["tenant", "status_class"],
            registry=registry,
        )
        self.graph_throttled = Counter(
            p + "graph_throttled_total", "429 responses from Graph.", ["tenant"], registry=registry
        )
        self.retry_after_seconds = Counter(
            p + "graph_retry_after_seconds_total",
            "Seconds spent waiting on Retry-After.",
            ["tenant"],
            registry=registry,
        )
        self.poll_duration = Histogram(
            p + "poll_duration_seconds",
            "Duration of one complete poll of a stream.",
            ["stream"],
            registry=registry,
        )
        self.poll_errors = Counter(
            p + "poll_errors_total", "Polls that failed, by reason.", ["stream", "reason"], registry=registry
        )
        self.last_poll_success = Gauge(
            p + "last_successful_poll_timestamp_seconds",
            "Unix time of the last complete poll.",
            ["stream"],
            registry=registry,
        )
        self.checkpoint_lag = Gauge(
            p + "checkpoint_lag_seconds",
            "Now minus the committed cursor of the stream.",
            ["stream"],
            registry=registry,
        )
        # Pipeline and sinks.
        self.queue_depth = Gauge(
            p + "queue_events", "Events waiting in a sink queue.", ["sink"], registry=registry
        )
        self.queue_capacity = Gauge(
            p + "queue_capacity_events", "Capacity of a sink queue.", ["sink"], registry=registry
        )
        self.queue_blocked_seconds = Counter(
            p + "queue_blocked_seconds_total",
            "Seconds the source waited on a full sink queue (backpressure).",
            ["sink"],
            registry=registry,
        )
        self.events_sent = Counter(
            p + "events_sent_total", "Events a sink delivered.", ["sink"], registry=registry
        )
        self.bytes_sent = Counter(
            p + "sent_bytes_total", "Bytes a sink delivered.", ["sink"], registry=registry
        )
        self.batches_sent = Counter(
            p + "batches_sent_total", "Batches a sink delivered.", ["sink"], registry=registry
        )
        self.send_duration = Histogram(
            p + "send_duration_seconds", "Duration of one send attempt.", ["sink"], registry=registry
        )
        self.send_retries = Counter(
            p + "send_retries_total",
            "Send attempts retried after a transient failure.",
            ["sink"],
            registry=registry,
        )
        self.dead_lettered = Counter(
            p + "dead_lettered_total",
            "Events written to the dead-letter file instead of the sink.",
            ["sink", "reason"],
            registry=registry,
        )
        self.dropped = Counter(
            p + "dropped_total",
            "Events dropped, by component and reason.",
            ["component", "reason"],
            registry=registry,
        )
        self.truncated = Counter(
            p + "truncated_fields_total",
            "Field values truncated by a codec to fit a limit.",
            ["sink", "field"],
            registry=registry,
        )
        self.sink_up = Gauge(
            p + "sink_up", "1 while the sink's last send or connect succeeded.", ["sink"], registry=registry
        )
        self.checkpoint_writes = Counter(
            p + "checkpoint_writes_total", "Checkpoint journal writes (append + fsync).", registry=registry
        )
        self.checkpoint_errors = Counter(
            p + "checkpoint_write_errors_total", "Checkpoint writes that failed.", registry=registry
        )
        # Graph source (issue #3).
        self.graph_retries = Counter(
            p + "graph_retries_total",
            "Graph requests retried after 5xx, timeouts, connection errors or malformed pages.",
            ["tenant"],
            registry=registry,
        )
        self.window_splits = Counter(
            p + "graph_window_splits_total",
            "Windows split by time before paging, because Graph's pages were not newest first.",
            ["stream"],
            registry=registry,
        )
        self.window_remaining = Gauge(
            p + "graph_window_remaining",
            "Alerts Graph counted ($count) in the part of the current window not read yet.",
            ["stream"],
            registry=registry,
        )
        self.graph_rereads = Counter(
            p + "graph_rereads_total",
            "Extra Graph requests of a window: a timestamp shared across a page cut, a count fallen short.",
            ["stream", "reason"],
            registry=registry,
        )
        self.alerts_rejected = Counter(
            p + "alerts_rejected_total",
            "Items without a usable id or timestamp, dead-lettered once instead of forwarded.",
            ["stream", "reason"],
            registry=registry,
        )
        self.seen_evicted = Counter(
            p + "graph_seen_evicted_total",
            "Dedup keys evicted early by the max_seen_ids cap (may cause duplicates, never loss).",
            ["stream"],
            registry=registry,
        )
        # Network sinks (connection lifecycle): event is connect, disconnect or error.
        self.sink_connections = Counter(
            p + "sink_connections_total",
            "Sink connection events: connect, disconnect, error.",
            ["sink", "event"],
            registry=registry,
        )
        # Delivery windows of the TCP, TLS and RELP sinks (issue #8).
        self.sink_unacked_events = Gauge(
            p + "sink_unacknowledged_events",
            "Messages written on a sink's connection and not yet acknowledged "
            "(TCP/TLS: by the peer's TCP stack; RELP: by rsp 200).",
            ["sink"],
            registry=registry,
        )
        self.sink_unacked_bytes = Gauge(
            p + "sink_unacknowledged_bytes",
            "Bytes written on a sink's connection and not yet acknowledged (see the events gauge).",
            ["sink"],
            registry=registry,
        )
        self.sink_resent = Counter(
            p + "sink_resent_events_total",
            "Messages handed back for re-sending because their connection broke before they were "
            "acknowledged (each may reach the receiver twice).",
            ["sink"],
            registry=registry,
        )
        self.sink_reconnects = Counter(
            p + "sink_reconnects_total",
            "Connections (RELP: sessions) opened again after the previous one was lost.",
            ["sink"],
            registry=registry,
        )
        # Operations (issue #6).
        self.rate_budget_tokens = Gauge(
            p + "graph_rate_budget_tokens",
            "Graph requests the tenant's rate budget would grant at once (0 while Retry-After blocks it).",
            ["tenant"],
            registry=registry,
        )
        self.log_lines_suppressed = Counter(
            p + "log_lines_suppressed_total",
            "Warning/error log lines held back because the same line was logged within the last minute.",
            ["reason"],
            registry=registry,
        )

        if not per_tenant:
            self._collapse()

    def _collapse(self) -> None:
        """Replace each per-tenant/per-stream metric by its ``_all`` stand-in (``agent.collapse``)."""
        gauges: dict[str, Callable[[Any], float]] = {
            "last_poll_success": min,  # the oldest: alert when any stream stops polling
            "checkpoint_lag": max,
            "rate_budget_tokens": min,
            "window_remaining": sum,
        }
        per_key = [
            "alerts_fetched",
            "alerts_new",
            "alerts_duplicate",
            "graph_requests",
            "graph_throttled",
            "retry_after_seconds",
            "poll_duration",
            "poll_errors",
            "graph_retries",
            "window_splits",
            "graph_rereads",
            "alerts_rejected",
            "seen_evicted",
        ]
        for attr in per_key:
            setattr(self, attr, cast(Any, Collapsed(getattr(self, attr))))
        for attr, combine in gauges.items():
            collapsed = Collapsed(getattr(self, attr), combine)
            setattr(self, attr, cast(Any, collapsed))
            self._collapse_refreshers.append(collapsed.refresh)

    def count_suppressed_lines(self, total: Callable[[], int]) -> None:
        """Export ``total()`` (log lines the repeat filter held back so far) on every refresh."""
        seen = 0

        def refresh() -> None:
            nonlocal seen
            now = total()
            self.log_lines_suppressed.labels("repeated").inc(max(0, now - seen))
            seen = now

        self.add_refresher(refresh)

    def add_refresher(self, refresh: Callable[[], None]) -> None:
        """Register a callable that updates time-dependent gauges; ``refresh`` runs them (before a scrape)."""
        self._refreshers.append(refresh)

    def refresh(self) -> None:
        """Bring time-dependent gauges (checkpoint lag, rate-budget tokens) up to date."""
        for refresh in self._refreshers:
            refresh()
        for refresh in self._collapse_refreshers:
            refresh()
