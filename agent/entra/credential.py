"""Entra ID app-only tokens through MSAL (client secret, certificate, PFX or workload identity).

One ``ClientCredential`` per (app registration, authority, scope): the Graph source asks for
``<graph root>/.default``, the Logs Ingestion sink for ``https://monitor.azure.com/.default``.

MSAL is synchronous (``requests``), so every call runs in a worker thread, never on the event loop.
MSAL caches the token and returns it until shortly before expiry (it treats a token with less than
300 s left as expired); after a 401 ``token(stale=…)`` drops that token once, however many callers
saw the 401 at the same time. Between those, a token is handed out again without a worker thread
while it has well over that left (``reuse_secs``): a thousand tenants' polls then cost no thread hop.

MSAL gets its own ``requests.Session`` with ``trust_env=False``: ``REQUESTS_CA_BUNDLE`` would
otherwise override the configured CA bundle. For the same reason the proxy is set on that session
explicitly (``agent.proxies.msal_proxies``): the configured one, else ``HTTPS_PROXY``/``NO_PROXY``.
The session never follows a redirect (``NoRedirectSession``): a 307 from the token endpoint would
make ``requests`` post the client secret or assertion again, wherever the ``Location`` points. A
redirect is reported as ``token_endpoint_redirect`` naming the ``Location`` (without its query); a
tenant Entra ID does not know (discovery answers 400 with AADSTS90002) as ``tenant_not_found``.

A rejected credential is logged once per attempt as one line with the AADSTS code; with a cool-down
(``cooldown_base_secs`` > 0) calls during it fail fast with the same error instead of hammering the
token endpoint. Secrets and assertions never appear in messages.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import msal
import requests
from pydantic import SecretStr

from agent.clock import Clock
from agent.entra.config import CredentialConfig
from agent.entra.gate import RequestGate, gated, mount_gate
from agent.errors import AuthError, TransientSourceError
from agent.proxies import msal_proxies
from agent.retry import backoff

log = logging.getLogger(__name__)

_AADSTS = re.compile(r"AADSTS\d+")
_DISCOVERY_FAILED = ("Unable to get authority configuration", "OIDC Discovery failed")


class RedirectRefused(requests.RequestException):
    """The token endpoint (or discovery) answered with a redirect, which is never followed."""


def _safe(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class NoRedirectSession(requests.Session):
    """A ``requests.Session`` for MSAL that refuses redirects instead of following them."""

    def request(self, method: str, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs["allow_redirects"] = False
        resp = super().request(method, url, *args, **kwargs)
        if 300 <= resp.status_code < 400:
            location = resp.headers.get("Location")
            where = url.decode() if isinstance(url, bytes) else url
            to = f" to {_safe(urljoin(where, location))}" if location else ""
            resp.close()
            raise RedirectRefused(
                f"{method} {_safe(where)}: HTTP {resp.status_code} redirect{to}; redirects are not followed"
            )
        return resp


@dataclass(frozen=True, slots=True)
class EntraApp:
    """An app registration, how it proves who it is, and where it asks for tokens for what."""

    tenant_id: str
    client_id: str
    credential: CredentialConfig
    #: Login host + ``/`` + tenant, e.g. ``https://login.microsoftonline.com/<tenant>``.
    authority: str
    #: The ``.default`` scope of the resource, e.g. ``https://graph.microsoft.com/.default``.
    scope: str
    #: MSAL instance discovery: on for Microsoft's own login hosts, off for custom authorities.
    instance_discovery: bool = True
    #: PEM bundle trusted for the token endpoint (``None``: the system store).
    ca_bundle: str | None = None
    proxy_url: SecretStr | None = None
    timeout_secs: float = 30.0


def msal_client_credential(cred: CredentialConfig) -> str | dict[str, Any]:
    """The ``client_credential`` argument for ``msal.ConfidentialClientApplication``.

    Reads key files (call it off the event loop). Raises ``OSError``/``ValueError`` for unusable files.
    """
    if cred.type == "secret":
        return cred.value.get_secret_value()
    if cred.type == "certificate":
        key_pem = cred.private_key_path.read_text(encoding="ascii")
        out: dict[str, Any] = {"private_key": key_pem}
        cert_pem = (cred.certificate_path or cred.private_key_path).read_text(encoding="ascii")
        if cred.private_key_passphrase is not None:
            out["passphrase"] = cred.private_key_passphrase.get_secret_value()
        if cred.thumbprint:
            out["thumbprint"] = cred.thumbprint
            if cred.send_certificate_chain:
                out["public_certificate"] = cert_pem
        else:
            out["public_certificate"] = cert_pem  # MSAL derives the SHA-256 thumbprint (PS256)
        return out
    if cred.type == "pfx":
        pfx: dict[str, Any] = {"private_key_pfx_path": str(cred.path)}
        if cred.passphrase is not None:
            pfx["passphrase"] = cred.passphrase.get_secret_value()
        return pfx
    if cred.type == "workload_identity":
        return {"client_assertion": _assertion_reader(cred.token_file)}
    raise AssertionError(f"unhandled credential {type(cred).__name__}")  # pragma: no cover


class _AssertionFileError(Exception):
    """The federated token file could not be read (message names the file, never its content)."""


def _assertion_reader(path: Path) -> Callable[[], str]:
    def read() -> str:
        try:
            value = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise _AssertionFileError(
                f"cannot read federated token file {str(path)!r}: {exc.strerror}"
            ) from None
        if not value:
            raise _AssertionFileError(f"federated token file {str(path)!r} is empty")
        return value

    return read


class ClientCredential:
    """Acquires app-only tokens for one (tenant, app, scope)."""

    def __init__(
        self,
        app: EntraApp,
        clock: Clock,
        *,
        cooldown_base_secs: float = 0.0,
        cooldown_max_secs: float = 0.0,
        gate: RequestGate | None = None,
        http_session: Callable[[Callable[[], requests.Session]], requests.Session] | None = None,
    ) -> None:
        self.app = app
        #: Returns the ``requests`` session to use, shared with other credentials (given how to build
        #: one); ``None``: a session of this credential's own.
        self._http_session = http_session
        #: Every HTTP request MSAL makes holds a slot of this budget (the Graph source's, per tenant).
        self._gate = gate
        self._loop: asyncio.AbstractEventLoop | None = None
        self.tenant_id = app.tenant_id
        self.client_id = app.client_id
        self._clock = clock
        self._msal: Any = None
        self._lock = asyncio.Lock()
        self._current: str | None = None
        #: Until when (monotonic) ``_current`` is handed out without asking MSAL (no worker thread).
        self._reuse_until = 0.0
        self._failures = 0
        self._failed_until = 0.0
        self._last_error: AuthError | None = None
        self._cooldown_base = cooldown_base_secs
        self._cooldown_max = cooldown_max_secs
        self._rng = random.Random()
        #: Token requests that reached MSAL (for metrics/tests; MSAL may still answer from its cache).
        self.attempts = 0

    def _session(self, shared: bool) -> requests.Session:
        app = self.app
        session = NoRedirectSession()
        session.trust_env = False
        session.verify = app.ca_bundle or True
        proxy = app.proxy_url.get_secret_value() if app.proxy_url else None
        session.proxies.update(msal_proxies(proxy, app.authority))
        if shared:
            mount_gate(session, None, None)  # each call's gate is set for its thread (``_acquire``)
        elif self._gate is not None:
            mount_gate(session, self._gate, lambda: self._loop)
        return session

    def _build(self) -> Any:
        app = self.app
        if self._http_session is not None:
            session = self._http_session(lambda: self._session(shared=True))
        else:
            session = self._session(shared=False)
        return msal.ConfidentialClientApplication(
            app.client_id,
            authority=app.authority,
            client_credential=msal_client_credential(app.credential),
            http_client=session,
            instance_discovery=app.instance_discovery,
            timeout=app.timeout_secs,
        )

    def _acquire(self, drop: bool) -> dict[str, Any]:
        with gated(self._gate, lambda: self._loop):
            if self._msal is None:
                self._msal = self._build()
            if drop:
                self._msal.remove_tokens_for_client()
            result: dict[str, Any] = self._msal.acquire_token_for_client(scopes=[self.app.scope])
            return result

    def retry_in(self) -> float:
        """Seconds left of the cool-down after a rejected credential (0 when none)."""
        return max(0.0, self._failed_until - self._clock.monotonic())

    async def token(self, stale: str | None = None) -> str:
        """Return a bearer token; with ``stale`` (a token a resource answered 401 to), a fresh one.

        Raises ``AuthError`` (credentials rejected, consent missing, unreadable key or token file;
        also during the cool-down that follows) or ``TransientSourceError`` (endpoint unavailable).
        """
        if stale is None and self._current is not None and self._clock.monotonic() < self._reuse_until:
            return self._current  # well within its lifetime: no thread hop, no MSAL cache search
        async with self._lock:
            if self._last_error is not None and self.retry_in() > 0:
                raise self._last_error
            drop = stale is not None and stale == self._current
            if drop:
                self._reuse_until = 0.0
            self.attempts += 1
            self._loop = asyncio.get_running_loop()
            try:
                result = await asyncio.to_thread(self._acquire, drop)
            except RedirectRefused as exc:
                self._msal = None
                raise self._reject("token_endpoint_redirect", str(exc)) from None
            except (requests.RequestException, msal.exceptions.MsalServiceError) as exc:
                # MSAL raises on token-endpoint 5xx (and replays that error ~5 s); requests on network errors.
                raise TransientSourceError(f"token endpoint unavailable: {type(exc).__name__}") from None
            except (_AssertionFileError, OSError, ValueError, TypeError) as exc:
                # Unreadable key/PFX/token file, wrong passphrase, malformed PEM or discovery document.
                self._msal = None
                raise self._reject(*self._classify(exc)) from None
            token = result.get("access_token")
            if isinstance(token, str) and token:
                if self._failures:
                    log.info("Token acquired again.", extra={"tenant": self.tenant_id, "app": self.client_id})
                self._failures = 0
                self._last_error = None
                self._current = token
                self._reuse_until = self._clock.monotonic() + reuse_secs(result.get("expires_in"))
                return token
            error = str(result.get("error", "unknown_error"))
            codes = _AADSTS.findall(str(result.get("error_description", "")))
            raise self._reject(error, codes[0] if codes else "no AADSTS code")

    def _classify(self, exc: BaseException) -> tuple[str, str]:
        """``(error, detail)`` for an exception MSAL raised while building its client or asking."""
        texts = []
        seen: BaseException | None = exc
        for _ in range(5):  # the exception and what it was raised from (MSAL chains discovery errors)
            if seen is None:
                break
            texts.append(str(seen))
            seen = seen.__cause__ or seen.__context__
        text = " ".join(texts)
        if isinstance(exc, ValueError) and any(marker in text for marker in _DISCOVERY_FAILED):
            codes = _AADSTS.findall(text)
            if "AADSTS90002" in codes:
                return "tenant_not_found", (
                    f"AADSTS90002: Entra ID does not know tenant {self.tenant_id!r}; check tenant_id "
                    "(and the cloud or authority)"
                )
            status = re.search(r"HTTP status: (\d+)", text)
            why = codes[0] if codes else (f"HTTP {status.group(1)}" if status else "no usable answer")
            return "authority_unusable", f"{why}: tenant discovery at {_safe(self.app.authority)} failed"
        return "credential_unusable", _describe(exc)

    def _reject(self, error: str, detail: str) -> AuthError:
        self._failures += 1
        delay = backoff(
            self._failures - 1, self._cooldown_base, self._cooldown_max, self._rng, min_fraction=0.5
        )
        self._failed_until = self._clock.monotonic() + delay
        message = f"token request for tenant {self.tenant_id} app {self.client_id} failed: {error} ({detail})"
        self._last_error = AuthError(message)
        log.error(
            "Token request rejected; backing off.",
            extra={
                "tenant": self.tenant_id,
                "app": self.client_id,
                "error": f"{error} ({detail})",
                "retry_in_secs": round(delay, 2),
            },
        )
        return self._last_error


#: MSAL renews a token with less than 300 s left; handing one out locally stops a minute before that.
_RENEW_MARGIN_SECS = 360.0


def reuse_secs(expires_in: object) -> float:
    """How long a token MSAL just returned may be handed out again without asking MSAL: until a minute
    before MSAL would renew it, and at most half its remaining life (MSAL's own refresh point for
    long-lived tokens); 0 when MSAL did not say."""
    if not isinstance(expires_in, int | float) or isinstance(expires_in, bool):
        return 0.0
    return max(0.0, min(float(expires_in) - _RENEW_MARGIN_SECS, float(expires_in) / 2))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, _AssertionFileError):
        return str(exc)
    if isinstance(exc, OSError):
        name = f" {exc.filename!r}" if exc.filename else ""
        return f"cannot read{name}: {exc.strerror}"
    # ValueError/TypeError texts from cryptography/MSAL describe the format, not the key material.
    return f"{type(exc).__name__}: {str(exc)[:160]}"
