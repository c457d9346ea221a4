"""The lane settings every ``[[sinks]]`` table carries: codec, queue, batching and retry.

They configure the pipeline in front of a sink, not the sink itself, so they live here, next to the
queue, runner and fan-out that read them; ``agent.sinks.config`` builds every sink table on
``LaneConfig``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from agent.codecs.config import CefCodecConfig, CodecConfig


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class QueueConfig(_Strict):
    """The bounded queue in front of a sink."""

    #: Alerts waiting for this sink. A parsed alert with evidence holds ~9 KiB, so the default keeps a
    #: blocked sink's backlog near 20 MiB (peak RSS under 100 MiB: BENCHMARKS.md, memory).
    max_events: int = Field(default=2_000, ge=1)
    #: ``block``: a full queue pauses polling (nothing lost).
    #: ``drop_newest``: new events are dropped and counted.
    when_full: Literal["block", "drop_newest"] = "block"


class BatchConfig(_Strict):
    """How many events one send may carry, and how long to wait to fill it."""

    #: Most events in one send; more collected events are split into several sends.
    max_events: int = Field(default=500, ge=1)
    #: Most bytes of encoded messages in one send; a single larger message is sent on its own.
    max_bytes: int = Field(default=1_000_000, ge=1024)
    #: How long a send waits for more events to fill a batch (adds at most this to latency).
    timeout_secs: float = Field(default=0.2, ge=0)


class RetryConfig(_Strict):
    """Backoff for transient failures: exponential with full jitter, bounded."""

    #: Backoff bound in seconds before the first retry; doubled per attempt up to ``max_backoff_secs``.
    initial_backoff_secs: float = Field(default=0.5, gt=0)
    #: Longest backoff in seconds between retries; a receiver's ``Retry-After`` is used instead when sent.
    max_backoff_secs: float = Field(default=60.0, gt=0)


class LaneConfig(_Strict):
    """What the pipeline needs of each sink table: its name, codec, queue, batching and retry."""

    #: Sink name, unique among sinks; labels its metrics, log lines and dead-letter records.
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    #: How each alert becomes one message (see Codecs below). Default ``cef``; ``json`` for
    #: ``elasticsearch`` and ``logs_ingestion``, which accept only ``json`` or ``ecs``.
    codec: CodecConfig = Field(default_factory=CefCodecConfig)
    #: The bounded queue of alerts waiting for this sink.
    queue: QueueConfig = Field(default_factory=QueueConfig)
    #: How many events one send may carry, and how long to wait to fill it.
    batch: BatchConfig = Field(default_factory=BatchConfig)
    #: Backoff between retries of a failed start (connect, open) or send; retried until delivered.
    retry: RetryConfig = Field(default_factory=RetryConfig)
