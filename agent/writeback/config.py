"""The ``[writeback]`` table: the inbound write-back API and how the agent's own writes are treated.

``tokens`` lists the API's clients. Each entry is a table ``{ name = "splunk", token = <secret> }``
(the name is who the audit lines and request states say), or just a secret (a string or
``{ env = … }`` / ``{ file = … }`` / ``{ credential = … }``), then named ``token-1``, ``token-2``, …
in list order.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agent.secrets import Secret

_SECRET_REFERENCES = frozenset({"env", "file", "credential"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WritebackToken(_Strict):
    """One client of the write-back API: its name and its bearer token."""

    #: Who this client is in audit lines and request states, e.g. ``splunk`` (never the token).
    name: str = Field(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")
    #: The bearer token the client sends (``Authorization: Bearer <token>``); a secret.
    token: Secret


class WritebackTls(_Strict):
    """Serve the write-back API over TLS; with ``client_ca_file`` clients must present a certificate."""

    #: PEM certificate (chain) of the listener.
    cert_file: Path
    #: PEM private key of ``cert_file``.
    key_file: Path
    #: PEM bundle of CAs whose client certificates are accepted; set: mutual TLS is required.
    client_ca_file: Path | None = None

    @model_validator(mode="after")
    def _files(self) -> WritebackTls:
        for what, path in (("cert_file", self.cert_file), ("key_file", self.key_file)):
            _readable(path, what)
        if self.client_ca_file is not None:
            _readable(self.client_ca_file, "client_ca_file")
        return self


def _readable(path: Path, what: str) -> None:
    if not path.is_file() or not os.access(path, os.R_OK):
        raise ValueError(f"{what} {str(path)!r} is not a readable file")


class WritebackConfig(_Strict):
    """Write-back: triage done in a SIEM updates the alert or incident in Microsoft Defender."""

    #: Serve the inbound write-back API (off by default; ``siem-agent alerts update`` works without it).
    enabled: bool = False
    #: Listen address; loopback by default. Set ``0.0.0.0`` (with ``tls``) deliberately to expose it.
    address: str = "127.0.0.1"
    #: TCP port of the write-back API; ``0`` picks a free one (logged at startup).
    port: int = Field(default=9465, ge=0, le=65535)
    #: The API's clients: ``{ name = "splunk", token = { env = "WB_SPLUNK" } }`` tables, or bare
    #: secrets (named ``token-1``, ``token-2``, … in order). At least one when ``enabled``.
    tokens: list[WritebackToken] = Field(default_factory=list)
    #: TLS for the listener (``cert_file``, ``key_file``, optional ``client_ca_file`` for mutual TLS).
    tls: WritebackTls | None = None
    #: ``true``: the alert version the agent's own write produced is forwarded like any other, marked
    #: as agent-originated (the SIEM sees Defender's confirmation); ``false``: it is not forwarded.
    forward_own_updates: bool = True
    #: Share of each source's ``requests_per_minute`` guaranteed to writes while they wait (polls are
    #: guaranteed the rest; either may use what the other leaves idle).
    budget_share: float = Field(default=0.2, gt=0, lt=1)
    #: Requests waiting for Graph at most; beyond it the API answers 503 with ``Retry-After``.
    queue_max_requests: int = Field(default=1000, ge=1, le=100_000)
    #: How long finished requests stay queryable (``GET /v1/requests/{id}``) and remembered for
    #: loop control and ``Idempotency-Key``; at most ten times ``queue_max_requests`` are kept.
    retention_secs: float = Field(default=604_800.0, ge=60)
    #: A request Graph could not be reached for within this time fails with ``expired``.
    give_up_after_secs: float = Field(default=86_400.0, gt=0)
    #: Largest request body accepted; larger ones get 413.
    max_body_bytes: int = Field(default=16_384, ge=1024, le=1_048_576)
    #: Open connections at most; further ones are closed at once (and counted).
    max_connections: int = Field(default=64, ge=1, le=10_000)
    #: Seconds a connection may take to deliver its request line and headers (TLS handshake
    #: included). There is no keep-alive, so this is also the idle limit.
    header_timeout_secs: float = Field(default=10.0, gt=0)
    #: Seconds to read a request's body and answer it.
    request_timeout_secs: float = Field(default=30.0, gt=0)

    @field_validator("tokens", mode="before")
    @classmethod
    def _name_bare_secrets(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        out = []
        for i, item in enumerate(value, 1):
            bare = isinstance(item, str) or (isinstance(item, dict) and set(item) <= _SECRET_REFERENCES)
            out.append({"name": f"token-{i}", "token": item} if bare else item)
        return out

    @model_validator(mode="after")
    def _check(self) -> WritebackConfig:
        if self.enabled and not self.tokens:
            raise ValueError("tokens: at least one token is required when enabled")
        names = [t.name for t in self.tokens]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"tokens: duplicate name(s): {', '.join(dupes)}")
        values = [t.token.get_secret_value() for t in self.tokens]
        if len(set(values)) != len(values):
            raise ValueError("tokens: two entries have the same token (audit lines could not tell who)")
        return self
