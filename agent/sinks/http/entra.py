"""Entra ID client-credentials tokens for the Logs Ingestion sink (MSAL, off the event loop).

A deliberately small twin of ``agent.auth.ClientCredential``, which is shaped around the Graph
source's configuration. Same rules: MSAL runs in a worker thread; it gets its own
``requests.Session`` with ``trust_env=False`` (``REQUESTS_CA_BUNDLE`` would override the CA bundle),
so its proxy is set explicitly (``agent.auth.msal_proxies``: the configured ``proxy_url``, else
``HTTPS_PROXY``/``NO_PROXY`` from the environment); messages carry the AADSTS code, never the secret
nor the proxy URL.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import msal
import requests
from pydantic import SecretStr

from agent.auth import msal_proxies
from agent.errors import TransientSinkError

_AADSTS = re.compile(r"AADSTS\d+")


class MonitorToken:
    """App-only tokens for one (tenant, app, scope) with a client secret."""

    def __init__(
        self,
        *,
        tenant_id: str,
        client_id: str,
        client_secret: SecretStr,
        authority_host: str,
        scope: str,
        ca_bundle: str | None,
        timeout_secs: float,
        instance_discovery: bool,
        proxy_url: SecretStr | None = None,
    ) -> None:
        self._tenant = tenant_id
        self._client_id = client_id
        self._secret = client_secret
        self._authority = authority_host.rstrip("/") + "/" + tenant_id
        self._scope = scope
        self._ca_bundle = ca_bundle
        self._timeout = timeout_secs
        self._discovery = instance_discovery
        self._proxy = proxy_url
        self._app: Any = None
        self._lock = asyncio.Lock()

    def _acquire(self, refresh: bool) -> dict[str, Any]:
        if self._app is None:
            session = requests.Session()
            session.trust_env = False
            session.verify = self._ca_bundle or True
            proxy = self._proxy.get_secret_value() if self._proxy else None
            session.proxies.update(msal_proxies(proxy, self._authority))
            self._app = msal.ConfidentialClientApplication(
                self._client_id,
                authority=self._authority,
                client_credential=self._secret.get_secret_value(),
                http_client=session,
                instance_discovery=self._discovery,
                timeout=self._timeout,
            )
        if refresh:
            self._app.remove_tokens_for_client()
        result: dict[str, Any] = self._app.acquire_token_for_client(scopes=[self._scope])
        return result

    async def token(self, refresh: bool = False) -> str:
        """A bearer token (``refresh`` drops the cached one). Raises ``TransientSinkError``.

        Rejected credentials are transient for a sink: the batch waits (backpressure) until an
        operator fixes them, rather than being dead-lettered.
        """
        async with self._lock:
            try:
                result = await asyncio.to_thread(self._acquire, refresh)
            except (requests.RequestException, msal.exceptions.MsalServiceError, ValueError) as exc:
                self._app = None
                raise TransientSinkError(f"token endpoint unavailable: {type(exc).__name__}") from None
        token = result.get("access_token")
        if isinstance(token, str) and token:
            return token
        codes = _AADSTS.findall(str(result.get("error_description", "")))
        raise TransientSinkError(
            f"token request for tenant {self._tenant} app {self._client_id} failed: "
            f"{result.get('error', 'unknown_error')} ({codes[0] if codes else 'no AADSTS code'})"
        )
