"""How an app registration proves who it is to Entra ID: the ``credential`` tables.

A component that authenticates as an app (the Graph source, the Logs Ingestion sink) takes exactly
one of:

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
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from agent.secrets import Secret


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def readable(path: Path, what: str) -> None:
    """Raise ``ValueError`` (a config problem naming ``what``) unless ``path`` is a readable file."""
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
        readable(self.private_key_path, "private_key_path")
        if self.certificate_path is not None:
            readable(self.certificate_path, "certificate_path")
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
        readable(self.path, "path")
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


def check_one_credential(client_secret: SecretStr | None, credential: object) -> None:
    """Raise ``ValueError`` unless exactly one of ``client_secret`` and ``credential`` is set."""
    if (client_secret is None) == (credential is None):
        raise ValueError("set exactly one of client_secret and credential")


def app_credential(client_secret: SecretStr | None, credential: CredentialConfig | None) -> CredentialConfig:
    """The credential a config's ``client_secret``/``credential`` pair names, as one table."""
    if credential is not None:
        return credential
    assert client_secret is not None  # the config's validator requires one of the two
    return SecretCredential(type="secret", value=client_secret)
