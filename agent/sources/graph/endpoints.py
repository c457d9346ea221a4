"""Where a Graph source logs in and what it calls: national clouds, overrides, its Entra ID app."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import requests

from agent.clock import Clock
from agent.entra import ClientCredential, EntraApp, app_credential
from agent.entra.gate import RequestGate
from agent.sources.config import GraphSecuritySourceConfig


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Login authority (without tenant) and resource root for one cloud."""

    authority_host: str
    resource: str


#: Login host and Graph root per national cloud (Graph docs: deployments, national clouds).
GRAPH_CLOUDS: dict[str, Endpoints] = {
    "global": Endpoints("https://login.microsoftonline.com", "https://graph.microsoft.com"),
    "usgov": Endpoints("https://login.microsoftonline.us", "https://graph.microsoft.us"),
    "dod": Endpoints("https://login.microsoftonline.us", "https://dod-graph.microsoft.us"),
}


@dataclass(frozen=True, slots=True)
class GraphEndpoints:
    """Where one source logs in and what it calls."""

    authority: str  # login host + "/" + tenant
    graph_root: str  # e.g. https://graph.microsoft.us
    scope: str  # <graph root>/.default
    custom: bool  # overridden by authority_url/graph_url (no MSAL instance discovery)


def endpoints_for(cfg: GraphSecuritySourceConfig) -> GraphEndpoints:
    """The authority, Graph root and ``.default`` scope for a source's cloud or explicit overrides."""
    cloud = GRAPH_CLOUDS[cfg.cloud]
    host = (cfg.authority_url or cloud.authority_host).rstrip("/")
    root = (cfg.graph_url or cloud.resource).rstrip("/")
    return GraphEndpoints(f"{host}/{cfg.tenant_id}", root, f"{root}/.default", cfg.authority_url is not None)


def graph_app(cfg: GraphSecuritySourceConfig) -> EntraApp:
    """The app registration a source authenticates as, asking for Graph's ``.default`` scope."""
    ep = endpoints_for(cfg)
    return EntraApp(
        tenant_id=cfg.tenant_id,
        client_id=cfg.client_id,
        credential=app_credential(cfg.client_secret, cfg.credential),
        authority=ep.authority,
        scope=ep.scope,
        instance_discovery=not ep.custom,
        ca_bundle=str(cfg.ca_bundle) if cfg.ca_bundle else None,
        proxy_url=cfg.proxy_url,
        timeout_secs=cfg.request_timeout_secs,
    )


def graph_credential(
    cfg: GraphSecuritySourceConfig,
    clock: Clock,
    gate: RequestGate | None = None,
    http_session: Callable[[Callable[[], requests.Session]], requests.Session] | None = None,
) -> ClientCredential:
    """Tokens for ``cfg``'s app; a rejected credential cools down like a failing poll backs off.

    With ``gate`` (the tenant's Graph request budget) every token-endpoint request holds a slot of it.
    """
    return ClientCredential(
        graph_app(cfg),
        clock,
        cooldown_base_secs=cfg.backoff_base_secs,
        cooldown_max_secs=cfg.error_backoff_max_secs,
        gate=gate,
        http_session=http_session,
    )
