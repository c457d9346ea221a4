"""Entra ID app authentication, shared by every component that calls a Microsoft API as an app.

``config`` holds the credential tables (secret, certificate, PFX, workload identity) that the Graph
source and the Logs Ingestion sink accept alike; ``credential`` turns one into bearer tokens.
"""

from __future__ import annotations

from agent.entra.config import CredentialConfig, app_credential, check_one_credential
from agent.entra.credential import ClientCredential, EntraApp

__all__ = ["ClientCredential", "CredentialConfig", "EntraApp", "app_credential", "check_one_credential"]
