"""Source configuration: a list of tables, each selecting its source by ``type``.

A Graph source authenticates as an app registration with exactly one of ``client_secret`` and a
``credential`` table (secret, certificate, PFX or workload identity: ``agent.entra.config``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agent.entra.config import CredentialConfig, check_one_credential, readable
from agent.secrets import Secret
from agent.shard import tenant_app_key

#: Default Graph request budget per (tenant, app): "150 requests per minute" (Graph throttling limits).
GRAPH_REQUESTS_PER_MINUTE = 150


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GraphSecuritySourceConfig(_Strict):
    """Graph ``/security/alerts_v2`` (and optionally ``/security/incidents``) for one tenant and app."""

    type: Literal["graph_security"]
    #: Source name, unique among sources; its stream ids (``<name>/alerts_v2/...``,
    #: ``<name>/incidents/all``) key the checkpoint, kept in ``<state_dir>/sources/<name>/``: a renamed
    #: source restarts at ``initial_lookback_secs``.
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
    #: Most pages read by following one ``@odata.nextLink`` chain (offset paging, which Graph refuses
    #: past some depth). Windows are read newest page first through their time bounds, so a chain is
    #: only followed where that cannot cut: more than ``page_size`` alerts sharing one timestamp, or
    #: pages not in newest-first order.
    max_pages_per_window: int = Field(default=20, ge=1)
    #: Largest Graph response accepted, in bytes, both as sent (compressed) and once decompressed; a
    #: larger one is a transient error (retried, then the poll fails and backs off).
    max_response_bytes: int = Field(default=64 * 1024 * 1024, ge=4096)
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
    #: Requests per minute for this tenant and app, shared by all its streams and by every source of the
    #: same tenant and app (Graph allows 150 per app per tenant; the first such source's value counts).
    requests_per_minute: int = Field(default=GRAPH_REQUESTS_PER_MINUTE, ge=1)
    #: Concurrent Graph requests of this tenant and app.
    max_concurrent_requests: int = Field(default=4, ge=1, le=64)

    @model_validator(mode="after")
    def _check(self) -> GraphSecuritySourceConfig:
        if self.name in (".", ".."):
            raise ValueError("name: must not be '.' or '..' (it names the source's state directory)")
        check_one_credential(self.client_secret, self.credential)
        if (self.authority_url is None) != (self.graph_url is None):
            raise ValueError("authority_url and graph_url must be set together")
        if self.ca_bundle is not None:
            readable(self.ca_bundle, "ca_bundle")
        if len(set(self.service_sources)) != len(self.service_sources):
            raise ValueError("service_sources has duplicates")
        for s in self.service_sources:
            if not s or not s.replace("_", "").isalnum():
                raise ValueError(f"service_sources: {s[:40]!r} is not a serviceSource name")
        return self

    def app_key(self) -> tuple[str, str, str]:
        """Identifies the (cloud, tenant, app) whose Graph budget this source spends."""
        return tenant_app_key(self.authority_url, self.cloud, self.tenant_id, self.client_id)


SourceConfig = Annotated[GraphSecuritySourceConfig, Field(discriminator="type")]
