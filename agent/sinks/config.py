"""Sink configuration: a list of tables, each selecting its sink by ``type``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agent.codecs.config import CefCodecConfig, CodecConfig, JsonCodecConfig
from agent.config.secrets import Secret

#: Codec types whose messages are one JSON object (what the JSON-bodied HTTP sinks embed as is).
JSON_CODECS = frozenset({"json", "ecs"})


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

    max_events: int = Field(default=500, ge=1)
    max_bytes: int = Field(default=1_000_000, ge=1024)
    #: How long a send waits for more events to fill a batch (adds at most this to latency).
    timeout_secs: float = Field(default=0.2, ge=0)


class RetryConfig(_Strict):
    """Backoff for transient failures: exponential with full jitter, bounded."""

    initial_backoff_secs: float = Field(default=0.5, gt=0)
    max_backoff_secs: float = Field(default=60.0, gt=0)


class _Sink(_Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    codec: CodecConfig = Field(default_factory=CefCodecConfig)
    queue: QueueConfig = Field(default_factory=QueueConfig)
    batch: BatchConfig = Field(default_factory=BatchConfig)
    retry: RetryConfig = Field(default_factory=RetryConfig)


class StdoutSinkConfig(_Sink):
    """Writes one message per line to standard output."""

    type: Literal["stdout"]


class FileSinkConfig(_Sink):
    """Appends one message per line to a file; reopened on SIGHUP (for logrotate)."""

    type: Literal["file"]
    path: str
    #: fsync after each batch, so an acknowledged batch survives a power loss.
    fsync: bool = True


class TlsConfig(_Strict):
    """Client TLS: verification on by default, TLS 1.2 or later only."""

    #: Verify the server's certificate chain and name. Turn off only for a throwaway test receiver.
    verify: bool = True
    #: PEM bundle of CAs to trust instead of the system store.
    ca_file: str | None = None
    #: Client certificate chain and key (PEM) for mutual TLS.
    cert_file: str | None = None
    key_file: str | None = None
    #: Name sent as SNI and checked against the certificate (default: the host connected to).
    server_name: str | None = None
    min_version: Literal["1.2", "1.3"] = "1.2"

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together (mutual TLS)")
        return self


class _Socket(_Sink):
    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)
    connect_timeout_secs: float = Field(default=10.0, gt=0)


class TcpSinkConfig(_Socket):
    """Syslog over TCP (RFC 6587) or, with ``tls``, over TLS (RFC 5425)."""

    type: Literal["tcp"]
    framing: Literal["octet_counting", "newline"] = "octet_counting"
    #: Bound on one send: writing the batch and waiting for the peer's TCP to acknowledge every byte.
    timeout_secs: float = Field(default=30.0, gt=0)
    tls: TlsConfig | None = None


class RelpSinkConfig(_Socket):
    """Syslog over RELP (rsyslog's Reliable Event Logging Protocol, librelp), plain or with ``tls``."""

    type: Literal["relp"]
    #: Transactions sent and not yet answered by ``rsp`` (librelp's own default is 128). A broken
    #: session can duplicate at most this many messages.
    window: int = Field(default=128, ge=1, le=65_536)
    #: Bound on one send: writing the batch and receiving every message's ``rsp``.
    timeout_secs: float = Field(default=30.0, gt=0)
    tls: TlsConfig | None = None


class UdpSinkConfig(_Socket):
    """Syslog over UDP (RFC 5426): one message per datagram, never split, no acknowledgement."""

    type: Literal["udp"]
    max_datagram_bytes: int = Field(default=2048, ge=480, le=65507)
    #: What to do with a message longer than ``max_datagram_bytes`` (both are counted).
    oversize: Literal["truncate", "drop"] = "truncate"


class _Http(_Sink):
    #: Total time for one HTTP request, connect included.
    timeout_secs: float = Field(default=30.0, gt=0)
    compression: Literal["gzip", "none"] = "gzip"
    tls: TlsConfig = Field(default_factory=TlsConfig)


class _JsonHttp(_Http):
    codec: CodecConfig = Field(default_factory=JsonCodecConfig)

    @model_validator(mode="after")
    def _json_codec(self) -> _JsonHttp:
        if self.codec.type not in JSON_CODECS:
            raise ValueError(
                f"this sink sends JSON documents: codec.type must be one of {sorted(JSON_CODECS)}"
            )
        return self


class SplunkHecSinkConfig(_Http):
    """Splunk HTTP Event Collector, ``/services/collector/event``, with indexer acknowledgement."""

    type: Literal["splunk_hec"]
    #: Base URL of the collector, e.g. ``https://splunk.example.com:8088``.
    url: str = Field(pattern=r"^https?://")
    token: Secret
    host: str | None = None
    source: str = "microsoft:graph:security"
    sourcetype: str = "microsoft:graph:security:alert"
    index: str | None = None
    #: Indexed fields added to every event (flat strings, as HEC requires).
    fields: dict[str, str] = Field(default_factory=dict)
    #: Wait for indexer acknowledgement before a batch counts as delivered (token needs ``useACK``).
    acknowledgement: bool = True
    ack_timeout_secs: float = Field(default=120.0, gt=0)
    ack_poll_interval_secs: float = Field(default=1.0, gt=0)


class ElasticsearchSinkConfig(_JsonHttp):
    """Elasticsearch/OpenSearch ``_bulk`` with idempotent ``create`` actions."""

    type: Literal["elasticsearch"]
    #: Base URL, e.g. ``https://es.example.com:9200``.
    url: str = Field(pattern=r"^https?://")
    #: Index or data stream name.
    index: str = Field(min_length=1)
    #: Target is a data stream: ``@timestamp`` (from ``lastUpdateDateTime``) is added to each document.
    data_stream: bool = False
    api_key: Secret | None = None
    username: str | None = None
    password: Secret | None = None
    #: ``wait_for`` makes documents searchable before the call returns (tests; slows ingestion).
    refresh: Literal["false", "true", "wait_for"] = "false"

    @model_validator(mode="after")
    def _auth(self) -> ElasticsearchSinkConfig:
        if self.api_key is not None and (self.username or self.password):
            raise ValueError("use either api_key or username/password")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        return self


class LogsIngestionSinkConfig(_JsonHttp):
    """Azure Monitor Logs Ingestion API (Microsoft Sentinel custom and standard tables)."""

    type: Literal["logs_ingestion"]
    #: Data collection endpoint (or the DCR's logsIngestion endpoint), e.g. ``https://x.westeurope-1.ingest.monitor.azure.com``.
    endpoint: str = Field(pattern=r"^https?://")
    dcr_immutable_id: str = Field(pattern=r"^dcr-[0-9a-f]{32}$")
    stream: str = Field(pattern=r"^(Custom|Microsoft)-[A-Za-z0-9_]+$")
    tenant_id: str = Field(min_length=1)
    client_id: str = Field(min_length=1)
    client_secret: Secret
    authority_host: str = Field(default="https://login.microsoftonline.com", pattern=r"^https://")
    scope: str = "https://monitor.azure.com/.default"
    #: Uncompressed body limit per call; the API rejects more than 1 MB.
    max_body_bytes: int = Field(default=1_000_000, ge=1024, le=1_000_000)


class HttpSinkConfig(_Http):
    """Any HTTP endpoint taking NDJSON (one message per line) in a POST."""

    type: Literal["http"]
    url: str = Field(pattern=r"^https?://")
    content_type: str = "application/x-ndjson"
    #: Extra request headers; values are secrets (never logged), e.g. ``{ env = "X_API_KEY" }``.
    headers: dict[str, Secret] = Field(default_factory=dict)
    bearer_token: Secret | None = None
    username: str | None = None
    password: Secret | None = None

    @model_validator(mode="after")
    def _auth(self) -> HttpSinkConfig:
        if self.bearer_token is not None and (self.username or self.password):
            raise ValueError("use either bearer_token or username/password")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        return self


SinkConfig = Annotated[
    StdoutSinkConfig
    | FileSinkConfig
    | TcpSinkConfig
    | RelpSinkConfig
    | UdpSinkConfig
    | SplunkHecSinkConfig
    | ElasticsearchSinkConfig
    | LogsIngestionSinkConfig
    | HttpSinkConfig,
    Field(discriminator="type"),
]
