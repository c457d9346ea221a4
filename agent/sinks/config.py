"""Sink configuration: a list of tables, each selecting its sink by ``type``."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agent.codecs.config import CodecConfig, JsonCodecConfig
from agent.entra.config import CredentialConfig, check_one_credential
from agent.pipeline.config import LaneConfig
from agent.secrets import Secret

#: Codec types whose messages are one JSON object (what the JSON-bodied HTTP sinks embed as is).
JSON_CODECS = frozenset({"json", "ecs"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Sink(LaneConfig):
    """Every sink table: the lane settings (``agent.pipeline.config``) plus the sink's own keys."""


class StdoutSinkConfig(_Sink):
    """Writes one message per line to standard output."""

    type: Literal["stdout"]


class FileSinkConfig(_Sink):
    """Appends one message per line to a file; reopened on SIGHUP (for logrotate)."""

    type: Literal["file"]
    #: File to append to; created (mode 0640, less the umask) if missing, reopened on SIGHUP.
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
    #: Private key (PEM, not encrypted) for ``cert_file``; set both or neither.
    key_file: str | None = None
    #: Name sent as SNI and checked against the certificate (default: the host connected to).
    server_name: str | None = None
    #: Lowest TLS version accepted (``1.3``: TLS 1.3 only); versions before 1.2 are never offered.
    min_version: Literal["1.2", "1.3"] = "1.2"

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together (mutual TLS)")
        return self


class _Socket(_Sink):
    #: Receiver's host name or IP address.
    host: str = Field(min_length=1)
    #: Receiver's port (TCP for ``tcp`` and ``relp``, UDP for ``udp``).
    port: int = Field(ge=1, le=65535)
    #: Seconds allowed to connect (``tcp``/``relp``: incl. TLS handshake and RELP ``open``) and to
    #: close; for ``udp``, to resolve the host and to hand one batch to the kernel.
    connect_timeout_secs: float = Field(default=10.0, gt=0)


class TcpSinkConfig(_Socket):
    """Syslog over TCP (RFC 6587) or, with ``tls``, over TLS (RFC 5425)."""

    type: Literal["tcp"]
    #: ``octet_counting``: ``LEN SP MSG`` (RFC 6587; RFC 5425 requires it over TLS); ``newline``:
    #: ``MSG LF``.
    framing: Literal["octet_counting", "newline"] = "octet_counting"
    #: How long the peer's TCP may leave our data or window probes unanswered before the connection
    #: counts as dead (then it is reset and the unacknowledged rest re-sent on a new one). A receiver
    #: that is alive but not reading is waited for on the same connection, however long (a warning is
    #: logged after this long).
    timeout_secs: float = Field(default=30.0, gt=0)
    #: Client TLS (RFC 5425); absent: plain TCP.
    tls: TlsConfig | None = None


class RelpSinkConfig(_Socket):
    """Syslog over RELP (rsyslog's Reliable Event Logging Protocol, librelp), plain or with ``tls``."""

    type: Literal["relp"]
    #: Transactions sent and not yet answered by ``rsp`` (librelp's own default is 128). A broken
    #: session can duplicate at most this many messages.
    window: int = Field(default=128, ge=1, le=65_536)
    #: Bound on one send: writing the batch and receiving every message's ``rsp``.
    timeout_secs: float = Field(default=30.0, gt=0)
    #: Client TLS for the RELP session; absent: plain TCP.
    tls: TlsConfig | None = None


class UdpSinkConfig(_Socket):
    """Syslog over UDP (RFC 5426): one message per datagram, never split, no acknowledgement."""

    type: Literal["udp"]
    #: Largest datagram in bytes; a longer message is never split (see ``oversize``).
    max_datagram_bytes: int = Field(default=2048, ge=480, le=65507)
    #: What to do with a message longer than ``max_datagram_bytes`` (both are counted).
    oversize: Literal["truncate", "drop"] = "truncate"


#: What a HEC URL may end with besides the base: the collector endpoints the sink appends itself.
_HEC_PATHS = re.compile(r"/services/collector(/event(/1\.0)?|/raw(/1\.0)?)?/*$")


def check_url(url: str, *, base: bool) -> str:
    """A sink URL: never with user info (credentials go in the sink's own keys, where they stay
    secret); a ``base`` URL (the sink appends paths to it) also without query or fragment."""
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            "user info (user:password@) is not allowed in the URL: use the sink's token, api_key or "
            "username/password keys"
        )
    if not parts.hostname:
        raise ValueError("the URL has no host")
    if base and (parts.query or parts.fragment):
        raise ValueError("the base URL must not have a query or fragment (the sink appends its own paths)")
    return url


def is_loopback(url: str) -> bool:
    """Whether ``url``'s host is this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cleartext_credentials(url: str, has_credentials: bool) -> bool:
    """Whether credentials would cross the network unencrypted (``http://`` to another host)."""
    return has_credentials and url.lower().startswith("http://") and not is_loopback(url)


def _one_auth(token_key: str, token: object, username: str | None, password: object) -> None:
    """At most one way to authenticate: the token, or username and password together."""
    if token is not None and (username or password):
        raise ValueError(f"use either {token_key} or username/password")
    if (username is None) != (password is None):
        raise ValueError("username and password go together")


class HttpCommonConfig(_Sink):
    """Keys every HTTP sink has (Splunk HEC, Elasticsearch, Logs Ingestion, http)."""

    #: Total time for one HTTP request, connect included.
    timeout_secs: float = Field(default=30.0, gt=0)
    #: ``gzip``: request bodies are gzip-compressed (``Content-Encoding: gzip``); ``none``: sent as is.
    compression: Literal["gzip", "none"] = "gzip"
    #: Client TLS for ``https://`` URLs (``logs_ingestion``: ``ca_file`` also for its token endpoint).
    tls: TlsConfig = Field(default_factory=TlsConfig)
    #: Proxy URL, a secret (may hold credentials); unset: ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` apply.
    proxy_url: Secret | None = None
    #: Allow sending this sink's credentials (token, API key, password, bearer token, secret headers)
    #: over ``http://`` to another host, i.e. in cleartext. Off: such a configuration is refused
    #: (``https://``, or a loopback host, needs no exception); on: a warning at startup and in ``validate``.
    allow_plain_http_credentials: bool = False

    def target_url(self) -> str:
        """The URL requests carrying the credentials go to."""
        raise NotImplementedError

    def has_credentials(self) -> bool:
        """Whether requests carry a secret."""
        raise NotImplementedError

    def check_cleartext(self) -> None:
        """Refuse credentials over ``http://`` to another host unless explicitly allowed (each sink's
        last validator calls this, after its own consistency checks)."""
        if (
            cleartext_credentials(self.target_url(), self.has_credentials())
            and not self.allow_plain_http_credentials
        ):
            raise ValueError(
                "credentials would be sent in cleartext over http://: use https://, or set "
                "allow_plain_http_credentials = true"
            )


class _JsonHttp(HttpCommonConfig):
    #: Must be a JSON codec (``json``, the default here, or ``ecs``).
    codec: CodecConfig = Field(default_factory=JsonCodecConfig)

    @model_validator(mode="after")
    def _json_codec(self) -> _JsonHttp:
        if self.codec.type not in JSON_CODECS:
            raise ValueError(
                f"this sink sends JSON documents: codec.type must be one of {sorted(JSON_CODECS)}"
            )
        return self


class SplunkHecSinkConfig(HttpCommonConfig):
    """Splunk HTTP Event Collector, ``/services/collector/event``, with indexer acknowledgement."""

    type: Literal["splunk_hec"]
    #: Base URL of the collector, e.g. ``https://splunk.example.com:8088``; a URL ending in
    #: ``/services/collector`` or ``/services/collector/event`` (or ``/raw``) is accepted and cut back
    #: to the base.
    url: str = Field(pattern=r"^https?://")
    #: HEC token, sent as ``Authorization: Splunk <token>``; a secret, e.g. ``{ env = "SPLUNK_HEC_TOKEN" }``.
    token: Secret
    #: HEC ``host`` of every event; unset: this machine's host name.
    host: str | None = None
    #: HEC ``source`` of every event.
    source: str = "microsoft:graph:security"
    #: HEC ``sourcetype`` of every event; unset: by codec, ``ms365:defender:incident:alerts`` for
    #: ``json`` (the sourcetype Splunk_TA_MS_Security and ESCU read), ``microsoft:graph:security:alert:cef``
    #: for ``cef`` (also inside a syslog envelope), ``microsoft:graph:security:alert`` otherwise.
    sourcetype: str | None = None
    #: HEC ``index`` of every event; unset: left out (the token's default index applies).
    index: str | None = None
    #: Indexed fields added to every event (flat strings, as HEC requires).
    fields: dict[str, str] = Field(default_factory=dict)
    #: Wait for indexer acknowledgement before a batch counts as delivered (token needs ``useACK``).
    acknowledgement: bool = True
    #: Seconds to wait for a batch's indexer acknowledgement before the batch is sent again.
    ack_timeout_secs: float = Field(default=120.0, gt=0)
    #: Longest pause in seconds between polls of the ack endpoint (polling starts at 50 ms, doubling).
    ack_poll_interval_secs: float = Field(default=1.0, gt=0)

    @field_validator("url")
    @classmethod
    def _base(cls, url: str) -> str:
        check_url(url, base=True)
        return _HEC_PATHS.sub("", url.rstrip("/")) or url

    def target_url(self) -> str:
        return self.url

    def has_credentials(self) -> bool:
        return True

    @model_validator(mode="after")
    def _transport(self) -> SplunkHecSinkConfig:
        self.check_cleartext()
        return self


class ElasticsearchSinkConfig(_JsonHttp):
    """Elasticsearch/OpenSearch ``_bulk`` with idempotent ``create`` actions."""

    type: Literal["elasticsearch"]
    #: Base URL, e.g. ``https://es.example.com:9200``.
    url: str = Field(pattern=r"^https?://")
    #: Index or data stream name.
    index: str = Field(min_length=1)
    #: Target is a data stream: ``@timestamp`` (from ``lastUpdateDateTime``) is added to each document.
    data_stream: bool = False
    #: API key (the base64 ``encoded`` form), sent as ``Authorization: ApiKey …``; a secret, e.g.
    #: ``{ env = "ES_API_KEY" }``. Not together with ``username``/``password``.
    api_key: Secret | None = None
    #: Basic-auth user name (with ``password``; not with ``api_key``).
    username: str | None = None
    #: Basic-auth password; a secret, e.g. ``{ env = "ES_PASSWORD" }``.
    password: Secret | None = None
    #: ``wait_for`` makes documents searchable before the call returns (tests; slows ingestion).
    refresh: Literal["false", "true", "wait_for"] = "false"
    #: ``siem-agent setup elasticsearch`` also installs the ``siem-agent-graph-alert`` ingest pipeline
    #: (``event.ingested`` = arrival time) as the index template's default pipeline. The sink itself
    #: does not use this key.
    ingest_pipeline: bool = True

    @model_validator(mode="after")
    def _auth(self) -> ElasticsearchSinkConfig:
        _one_auth("api_key", self.api_key, self.username, self.password)
        return self

    @model_validator(mode="after")
    def _data_stream_name(self) -> ElasticsearchSinkConfig:
        # ECS documents carry data_stream.*: a data stream must be the one they name.
        if self.data_stream and self.codec.type == "ecs":
            expected = f"logs-{self.codec.dataset}-{self.codec.namespace}"
            if self.index != expected:
                raise ValueError(
                    f"index {self.index!r} is not the data stream the ecs codec's documents name "
                    f"({expected!r}, from codec.dataset and codec.namespace): set one to match the other"
                )
        return self

    @field_validator("url")
    @classmethod
    def _base(cls, url: str) -> str:
        return check_url(url, base=True)

    def target_url(self) -> str:
        return self.url

    def has_credentials(self) -> bool:
        return self.api_key is not None or self.password is not None

    @model_validator(mode="after")
    def _transport(self) -> ElasticsearchSinkConfig:
        self.check_cleartext()
        return self


class LogsIngestionSinkConfig(_JsonHttp):
    """Azure Monitor Logs Ingestion API (Microsoft Sentinel custom and standard tables)."""

    type: Literal["logs_ingestion"]
    #: Data collection endpoint (or the DCR's logsIngestion endpoint), e.g. ``https://x.westeurope-1.ingest.monitor.azure.com``.
    endpoint: str = Field(pattern=r"^https?://")
    #: Immutable ID of the data collection rule (``dcr-`` and 32 hex digits).
    dcr_immutable_id: str = Field(pattern=r"^dcr-[0-9a-f]{32}$")
    #: The DCR's input stream to send to (``Custom-<name>`` or ``Microsoft-<name>``), as the DCR declares it.
    stream: str = Field(pattern=r"^(Custom|Microsoft)-[A-Za-z0-9_]+$")
    #: Directory (tenant) ID of the app registration the sink authenticates as.
    tenant_id: str = Field(min_length=1)
    #: Application (client) ID of that app; it needs *Monitoring Metrics Publisher* on the DCR.
    client_id: str = Field(min_length=1)
    #: Client secret *Value* of that app; a secret, e.g. ``{ env = "SENTINEL_CLIENT_SECRET" }``. The
    #: simple form of ``credential = { type = "secret", value = … }``.
    client_secret: Secret | None = None
    #: Authenticate with a secret, certificate, PFX or workload-identity table (as a Graph source does,
    #: see Entra ID credentials) instead of ``client_secret``; exactly one of the two must be set.
    credential: CredentialConfig | None = None
    #: Entra ID login host for the token; the tenant ID is appended (change it for national clouds).
    authority_host: str = Field(default="https://login.microsoftonline.com", pattern=r"^https://")
    #: OAuth scope of the token requested for the ingestion endpoint.
    scope: str = "https://monitor.azure.com/.default"
    #: Uncompressed body limit per call; the API rejects more than 1 MB.
    max_body_bytes: int = Field(default=1_000_000, ge=1024, le=1_000_000)

    @model_validator(mode="after")
    def _credential(self) -> LogsIngestionSinkConfig:
        check_one_credential(self.client_secret, self.credential)
        return self

    @field_validator("endpoint")
    @classmethod
    def _base(cls, url: str) -> str:
        return check_url(url, base=True)

    def target_url(self) -> str:
        return self.endpoint

    def has_credentials(self) -> bool:
        return True  # an Entra ID bearer token

    @model_validator(mode="after")
    def _transport(self) -> LogsIngestionSinkConfig:
        self.check_cleartext()
        return self


class HttpSinkConfig(HttpCommonConfig):
    """Any HTTP endpoint taking NDJSON (one message per line) in a POST."""

    type: Literal["http"]
    #: URL each batch is POSTed to (no user info: use ``username``/``password``); its query is left out
    #: of log and error messages.
    url: str = Field(pattern=r"^https?://")
    #: ``Content-Type`` header of each POST.
    content_type: str = "application/x-ndjson"
    #: Extra request headers; values are secrets (never logged), e.g. ``{ env = "X_API_KEY" }``.
    headers: dict[str, Secret] = Field(default_factory=dict)
    #: Sent as ``Authorization: Bearer <token>``; a secret, e.g. ``{ env = "HTTP_SINK_TOKEN" }``.
    bearer_token: Secret | None = None
    #: Basic-auth user name (with ``password``; not with ``bearer_token``).
    username: str | None = None
    #: Basic-auth password; a secret, e.g. ``{ env = "HTTP_SINK_PASSWORD" }``.
    password: Secret | None = None

    @model_validator(mode="after")
    def _auth(self) -> HttpSinkConfig:
        _one_auth("bearer_token", self.bearer_token, self.username, self.password)
        return self

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        return check_url(url, base=False)

    def target_url(self) -> str:
        return self.url

    def has_credentials(self) -> bool:
        return bool(self.headers) or self.bearer_token is not None or self.password is not None

    @model_validator(mode="after")
    def _transport(self) -> HttpSinkConfig:
        self.check_cleartext()
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
