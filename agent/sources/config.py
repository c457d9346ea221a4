"""Source configuration: a list of tables, each selecting its source by ``type``.

A Graph source authenticates with exactly one of:

* ``client_secret = "…"`` (or ``{ env = "…" }`` / ``{ file = "…" }``) — the simple form;
* ``credential = { type = "secret", value = … }`` — the same, spelled as a table;
* ``credential = { type = "certificate", private_key_path = "…", certificate_path = "…" }`` — PEM key and
  certificate (one file may hold both); ``thumbprint`` (SHA-1 hex) is optional and only for authorities
  that need SHA-1 (ADFS); ``private_key_passphrase`` for an encrypted key;
* ``credential = { type = "pfx", path = "…", passphrase = … }`` — a PKCS#12 bundle;
* ``credential = { type = "workload_identity" }`` — federated client assertion read from
  ``token_file`` (default ``$AZURE_FEDERATED_TOKEN_FILE``) on every token request.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agent.secrets import Secret

#: Default Graph request budget per (tenant, app): "150 requests per minute" (Graph throttling limits).
GRAPH_REQUESTS_PER_MINUTE = 150


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _readable(path: Path, what: str) -> None:
    if not path.is_file() or not os.access(path, os.R_OK):
        raise ValueError(f"{what} {str(path)!r} is not a readable file")


class SecretCredential(_Strict):
    """A client secret (the app registration's "Certificates & secrets" value, not its id)."""

    type: Literal["secret"]
    #: The client secret's *Value* (not its ID); a secret, e.g. ``{ env = "GRAPH_CLIENT_SECRET" }``.
    value: Secret


class CertificateCredential(_Strict):
    """A certificate uploaded to the app registration, with its private key as PEM."""

    type: Literal["certificate"]
    #: PEM private key (may also contain the certificate).
    private_key_path: Path
    #: PEM certificate; default: read it from ``private_key_path``.
    certificate_path: Path | None = None
    #: SHA-1 thumbprint (hex). Leave unset: the SHA-256 thumbprint is computed from the certificate.
    thumbprint: str | None = Field(default=None, pattern=r"^[0-9A-Fa-f]{40}$")
    #: Passphrase of an encrypted private key; a secret, e.g. ``{ env = "GRAPH_KEY_PASSPHRASE" }``.
    private_key_passphrase: Secret | None = None
    #: Send the certificate chain (``x5c``) with the assertion (subject name/issuer authentication).
    send_certificate_chain: bool = False

    @model_validator(mode="after")
    def _files(self) -> CertificateCredential:
        _readable(self.private_key_path, "private_key_path")
        if self.certificate_path is not None:
            _readable(self.certificate_path, "certificate_path")
        elif self.thumbprint is None and b"BEGIN CERTIFICATE" not in self.private_key_path.read_bytes():
            raise ValueError("private_key_path holds no certificate: set certificate_path (or thumbprint)")
        return self


class PfxCredential(_Strict):
    """A PKCS#12 (.pfx/.p12) file holding the certificate and its private key."""

    type: Literal["pfx"]
    #: PKCS#12 (.pfx/.p12) file with the certificate and its private key; must be readable at startup.
    path: Path
    #: Passphrase of the PKCS#12 file, if it has one; a secret, e.g. ``{ env = "GRAPH_PFX_PASSPHRASE" }``.
    passphrase: Secret | None = None

    @model_validator(mode="after")
    def _file(self) -> PfxCredential:
        _readable(self.path, "path")
        return self


class WorkloadIdentityCredential(_Strict):
    """Workload identity federation: a federated token file (Kubernetes, GitHub OIDC, …).

    The file is read again for every token request, because the platform rotates it.
    """

    type: Literal["workload_identity"]
    #: Default: the ``AZURE_FEDERATED_TOKEN_FILE`` environment variable at startup.
    token_file: Path

    @model_validator(mode="before")
    @classmethod
    def _default_file(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("token_file") is None:
            env = os.environ.get("AZURE_FEDERATED_TOKEN_FILE")
            if not env:
                raise ValueError("token_file is not set and AZURE_FEDERATED_TOKEN_FILE is not set")
            data = {**data, "token_file": env}
        return data


CredentialConfig = Annotated[
    SecretCredential | CertificateCredential | PfxCredential | WorkloadIdentityCredential,
    Field(discriminator="type"),
]


class GraphSecuritySourceConfig(_Strict):
    """Graph ``/security/alerts_v2`` (and optionally ``/security/incidents``) for one tenant and app."""

    type: Literal["graph_security"]
    #: Source name, unique among sources; its stream ids (``<name>/alerts_v2/...``,
    #: ``<name>/incidents/all``) key the checkpoint: a renamed source restarts at ``initial_lookback_secs``.
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    #: Directory (tenant) ID to poll; appended to the login host and used as the ``tenant`` metric label.
    tenant_id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    #: Application (client) ID of the app registration (needs SecurityAlert.Read.All, admin-consented).
    client_id: str = Field(min_length=1)
    #: The simple form of ``credential = { type = "secret", value = … }``.
    client_secret: Secret | None = None
    #: Authenticate with a secret, certificate, PFX or workload-identity table (see below) instead of
    #: ``client_secret``; exactly one of the two must be set.
    credential: CredentialConfig | None = None
    #: National cloud, selecting the login host and Graph root: ``global`` (incl. GCC), ``usgov`` (GCC
    #: High), ``dod``. Ignored when ``authority_url``/``graph_url`` are set.
    cloud: Literal["global", "usgov", "dod"] = "global"
    #: Override the login host (e.g. ``https://login.example/``); the tenant id is appended.
    authority_url: str | None = Field(default=None, pattern=r"^https://")
    #: Override the Graph root (e.g. ``https://graph.example``); ``/v1.0/...`` is appended.
    graph_url: str | None = Field(default=None, pattern=r"^https://")
    #: PEM bundle trusted for the token endpoint and Graph (private CAs, TLS-inspecting proxies).
    ca_bundle: Path | None = None
    #: HTTPS proxy for the token endpoint and Graph (may carry credentials, hence a secret). Default:
    #: ``HTTPS_PROXY``/``NO_PROXY`` from the environment.
    proxy_url: Secret | None = None
    #: One stream per listed serviceSource (polled concurrently); empty means one stream for all.
    service_sources: list[str] = Field(default_factory=list)
    #: Also poll ``/security/incidents`` (needs SecurityIncident.Read.All).
    incidents: bool = False
    #: Ask for ``$expand=alerts`` on incidents (large, and known to fail with HTTP 500 on big tenants).
    incidents_expand_alerts: bool = False
    #: ``$top`` (incidents per page) of each ``/security/incidents`` request; only with ``incidents``.
    incidents_page_size: int = Field(default=50, ge=1, le=1000)
    #: Seconds from the end of a successful poll of a stream to the start of its next poll.
    poll_interval_secs: float = Field(default=60.0, gt=0)
    #: Re-read this much history before the cursor on every poll, for alerts Graph indexes late.
    overlap_secs: float = Field(default=600.0, ge=0)
    #: How far back the first run (no checkpoint yet) starts.
    initial_lookback_secs: float = Field(default=86_400.0, ge=0)
    #: ``$top`` (alerts per page) of each ``/security/alerts_v2`` request.
    page_size: int = Field(default=500, ge=1, le=2000)
    #: A window needing more pages than this is split in two time windows instead of paging deeper.
    max_pages_per_window: int = Field(default=20, ge=1)
    #: ``all``: every new version of an alert is forwarded once (window on ``lastUpdateDateTime``);
    #: ``first``: each alert once, as first seen (window on ``createdDateTime``).
    forward_updates: Literal["all", "first"] = "all"
    #: Upper bound of remembered (id, lastUpdateDateTime) keys per stream; beyond it the oldest are
    #: evicted (counted and logged: this can only cause duplicates, never loss).
    max_seen_ids: int = Field(default=200_000, ge=100)
    #: Seconds allowed for one Graph request and for one token-endpoint request.
    request_timeout_secs: float = Field(default=30.0, gt=0)
    #: Attempts per request on 5xx, timeouts, connection errors and malformed pages (429 is separate).
    max_attempts: int = Field(default=5, ge=1, le=20)
    #: Exponential backoff with full jitter between attempts: base, doubled per attempt, capped.
    backoff_base_secs: float = Field(default=1.0, gt=0)
    #: Upper bound in seconds of the backoff between attempts of one request.
    backoff_max_secs: float = Field(default=60.0, gt=0)
    #: Polls failing for good (auth, 4xx) back off up to this long.
    error_backoff_max_secs: float = Field(default=300.0, gt=0)
    #: Requests per minute for this tenant and app, shared by all its streams (Graph allows 150).
    requests_per_minute: int = Field(default=GRAPH_REQUESTS_PER_MINUTE, ge=1)
    #: Concurrent Graph requests of this tenant and app.
    max_concurrent_requests: int = Field(default=4, ge=1, le=64)

    @model_validator(mode="after")
    def _check(self) -> GraphSecuritySourceConfig:
        if (self.client_secret is None) == (self.credential is None):
            raise ValueError("set exactly one of client_secret and credential")
        if (self.authority_url is None) != (self.graph_url is None):
            raise ValueError("authority_url and graph_url must be set together")
        if self.ca_bundle is not None:
            _readable(self.ca_bundle, "ca_bundle")
        if len(set(self.service_sources)) != len(self.service_sources):
            raise ValueError("service_sources has duplicates")
        for s in self.service_sources:
            if not s or not s.replace("_", "").isalnum():
                raise ValueError(f"service_sources: {s[:40]!r} is not a serviceSource name")
        return self

    def app_key(self) -> tuple[str, str, str]:
        """Identifies the (cloud, tenant, app) whose Graph budget this source spends."""
        return (self.authority_url or self.cloud, self.tenant_id.lower(), self.client_id.lower())


def duplicate_apps(sources: Sequence[GraphSecuritySourceConfig]) -> list[str]:
    """Names of sources that share a (cloud, tenant, app) with an earlier one.

    Each source keeps its own request budget, so two sources for the same app and tenant would
    together exceed Graph's limit; list the serviceSources in one source instead.
    """
    first: dict[tuple[str, str, str], str] = {}
    dupes = []
    for s in sources:
        key = s.app_key()
        if key in first:
            dupes.append(f"{s.name} (same tenant and app as {first[key]})")
        else:
            first[key] = s.name
    return dupes


SourceConfig = Annotated[GraphSecuritySourceConfig, Field(discriminator="type")]
