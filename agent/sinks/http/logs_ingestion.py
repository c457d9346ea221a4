"""Azure Monitor Logs Ingestion API (DCR-based; Microsoft Sentinel custom and standard tables).

``POST {endpoint}/dataCollectionRules/{dcr_immutable_id}/streams/{stream}?api-version=2023-01-01``
with a JSON array of the codec's objects (gzip), ``Authorization: Bearer`` from an Entra ID
client-credentials token for ``https://monitor.azure.com/.default`` (``agent.entra.ClientCredential``:
client secret, certificate, PFX or workload identity, MSAL off the event loop; any ``TokenSource`` can
be passed in). The app needs *Monitoring Metrics Publisher* on the DCR. A rejected credential holds
the batch (``TransientSinkError``) rather than dead-lettering it, until an operator fixes it.

Delivery: 204 (or any 2xx) means Azure accepted the call. A batch larger than ``max_body_bytes``
(1 MB, the API's limit) is sent as several calls; once one call succeeded, a transient failure of a
later one marks only the later events for retry (``SendResult.retry``), so nothing is sent twice on
purpose. A single event over the limit is rejected (dead-lettered). 429 honours ``Retry-After``; 401
gets a fresh token once and repeats the call; 403 (missing role) holds the batch; 413 splits; other
4xx (e.g. 400 invalid data) reject that call's events. The API does no de-duplication, so a replay
after a lost response can duplicate rows. The legacy HTTP Data Collector API (SharedKey, retired
2026-09-14) is not supported.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Protocol

import orjson

from agent.entra import ClientCredential, EntraApp, app_credential
from agent.errors import AgentError, PermanentSinkError, TransientSinkError
from agent.model import Event
from agent.sinks.base import SendResult, SinkContext
from agent.sinks.config import LogsIngestionSinkConfig
from agent.sinks.http.client import HttpClient, HttpResponse, check_status, safe_url, send_halving

API_VERSION = "2023-01-01"
_PUBLIC_AUTHORITIES = {
    "https://login.microsoftonline.com",
    "https://login.microsoftonline.us",
    "https://login.partner.microsoftonline.cn",
}


class TokenSource(Protocol):
    """Bearer tokens for the ingestion endpoint."""

    async def token(self, stale: str | None = None) -> str:
        """A token; with ``stale`` (one the endpoint answered 401 to), a fresh one. Raises ``AgentError``."""
        ...


class LogsIngestionSink:
    """Posts batches to one DCR stream."""

    def __init__(
        self, config: LogsIngestionSinkConfig, ctx: SinkContext, tokens: TokenSource | None = None
    ) -> None:
        self.name = config.name
        self._cfg = config
        self._http = HttpClient.for_sink(config, ctx.clock)
        self._url = (
            f"{config.endpoint.rstrip('/')}/dataCollectionRules/{config.dcr_immutable_id}"
            f"/streams/{config.stream}"
        )
        self._tokens: TokenSource = tokens or ClientCredential(entra_app(config), ctx.clock)
        self._what = f"Logs Ingestion {config.stream} at {safe_url(self._url)}"
        self._head_what = f"HEAD {safe_url(config.endpoint)}"

    def groups(self, events: Sequence[Event]) -> tuple[list[list[int]], dict[int, str]]:
        """Split indexes into calls whose JSON array fits ``max_body_bytes``; oversize ones rejected."""
        limit = self._cfg.max_body_bytes
        groups: list[list[int]] = []
        rejected: dict[int, str] = {}
        current: list[int] = []
        size = 2  # "[" and "]"
        for i, e in enumerate(events):
            n = len(e.payload) + 1  # the comma
            if n + 2 > limit:
                rejected[i] = f"event of {len(e.payload)} bytes exceeds the {limit}-byte call limit"
                continue
            if current and size + n > limit:
                groups.append(current)
                current, size = [], 2
            current.append(i)
            size += n
        if current:
            groups.append(current)
        return groups, rejected

    async def start(self) -> None:
        self._http.start()

    async def healthcheck(self) -> str:
        """A token for the ingestion ``scope`` (the credential works), then a ``HEAD`` on the endpoint:
        any HTTP answer but a redirect proves it is reachable (no rows are sent)."""
        await self._token()
        what = self._head_what
        resp = await self._http.request("HEAD", self._cfg.endpoint, what)
        if 300 <= resp.status < 400:
            check_status(resp, what)
        return f"reachable: token for {self._cfg.scope}; {what}: HTTP {resp.status}"

    async def send(self, events: Sequence[Event]) -> SendResult:
        groups, rejected = self.groups(events)
        result = SendResult(rejected=rejected)
        delivered_any = False
        for n, idxs in enumerate(groups):
            try:
                sub = await send_halving([events[i] for i in idxs], self._post)
            except TransientSinkError:
                if not delivered_any:
                    raise
                result.retry.extend(i for g in groups[n:] for i in g)
                break
            except PermanentSinkError as exc:
                result.rejected.update({i: str(exc) for i in idxs})
                continue
            delivered_any = True
            result.rejected.update({idxs[j]: r for j, r in sub.rejected.items()})
            result.retry.extend(idxs[j] for j in sub.retry)
        return result

    async def _token(self, stale: str | None = None) -> str:
        try:
            return await self._tokens.token(stale=stale)
        except TransientSinkError:
            raise
        except AgentError as exc:  # AuthError (rejected credential), TransientSourceError (endpoint down)
            raise TransientSinkError(f"Logs Ingestion token: {exc}") from None

    async def _post(self, events: Sequence[Event]) -> SendResult:
        body = b"[" + b",".join(e.payload for e in events) + b"]"
        what = self._what
        token = await self._token()
        resp = await self._call(body, what, token)
        if resp.status == 401:
            resp = await self._call(body, what, await self._token(stale=token))
        check_status(resp, what, _error_summary(resp))
        return SendResult()

    async def _call(self, body: bytes, what: str, token: str) -> HttpResponse:
        headers = {
            "Authorization": "Bearer " + token,
            "Content-Type": "application/json",
            "x-ms-client-request-id": str(uuid.uuid4()),
        }
        return await self._http.post(self._url, body, headers, what, params={"api-version": API_VERSION})

    async def aclose(self) -> None:
        await self._http.aclose()


def entra_app(config: LogsIngestionSinkConfig) -> EntraApp:
    """The app registration the sink authenticates as, asking for the ingestion ``scope``.

    The same credential tables as a Graph source; no cool-down after a rejection (the runner's
    backoff already spaces the attempts).
    """
    authority = config.authority_host.rstrip("/")
    return EntraApp(
        tenant_id=config.tenant_id,
        client_id=config.client_id,
        credential=app_credential(config.client_secret, config.credential),
        authority=f"{authority}/{config.tenant_id}",
        scope=config.scope,
        instance_discovery=authority in _PUBLIC_AUTHORITIES,
        ca_bundle=config.tls.ca_file,
        proxy_url=config.proxy_url,
        timeout_secs=config.timeout_secs,
    )


def _error_summary(resp: HttpResponse) -> str:
    """``code: message`` from an Azure error body (``{"error": {"code", "message"}}``), bounded."""
    try:
        value = orjson.loads(resp.body) if resp.body else None
    except orjson.JSONDecodeError:
        return ""
    err = value.get("error") if isinstance(value, dict) else None
    if isinstance(err, dict):
        return f"{err.get('code', '')}: {str(err.get('message', ''))[:300]}"
    return ""
