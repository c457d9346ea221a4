"""What every HTTP sink shares: one aiohttp session, gzip, timeouts and response classification.

Classification (each sink refines it with what its API documents):

* 2xx: the receiver has the data (per the sink's own rules, e.g. HEC indexer ack, ``_bulk`` items).
* 408, 429, 5xx, connection errors, timeouts: ``TransientSinkError`` (``Retry-After`` honoured).
* 401, 403: ``TransientSinkError`` too. The receiver refused *us*, not the data: dead-lettering every
  alert until a credential is fixed would be worse than holding them (backpressure, ``sink_up=0``).
* 3xx, 404, 405: ``EndpointError`` (transient): the URL is wrong, not the events. The batch is held
  and the sink is not ready until the URL is fixed; the message names the URL (and a redirect's
  ``Location``) in the safe form. Redirects are never followed: aiohttp would turn a POST into a GET
  on 301/302/303 (and a 2xx would then count as delivered), and re-send our secret headers and the
  alerts to another origin on 307/308.
* 413: the batch is split in halves and each half sent (a single event too large is rejected).
* any other 4xx: ``PermanentSinkError`` (the batch is dead-lettered).

No message built here quotes a header, a query string or a body we sent: they may carry secrets.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from agent.clock import Clock
from agent.errors import EndpointError, PermanentSinkError, TransientSinkError
from agent.model import Event
from agent.proxies import env_proxy
from agent.retry import parse_retry_after
from agent.sinks.base import SendResult
from agent.sinks.config import HttpCommonConfig, TlsConfig
from agent.sinks.tls import client_context

#: Responses larger than this are not read (a ``_bulk`` reply for a 1 MB batch is far smaller).
MAX_RESPONSE_BYTES = 32 * 1024 * 1024
_GZIP_OFF_LOOP_BYTES = 256 * 1024


class PayloadTooLarge(Exception):
    """HTTP 413: the caller splits the batch."""


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes
    #: Seconds its ``Retry-After`` asked for (``agent.retry``: at most an hour), ``None`` without one.
    retry_after: float | None = None
    #: The URL asked, in the safe form (no user info, query or fragment), for messages.
    url: str = ""


def check_status(resp: HttpResponse, what: str, detail: str = "") -> None:
    """Raise for a non-2xx response per the module docstring; ``detail`` is a safe summary of the body."""
    status = resp.status
    if 200 <= status < 300:
        return
    suffix = f": {detail}" if detail else ""
    if 300 <= status < 400:
        location = resp.headers.get("Location")
        to = f" to {_redirect_target(resp.url, location)}" if location else ""
        raise EndpointError(
            f"{what}: HTTP {status} redirect{to}; redirects are not followed: configure the final URL"
        )
    if status in (404, 405):  # ``what`` names the URL (safe form) already
        raise EndpointError(f"{what}: HTTP {status}: wrong endpoint, check the URL; batch held{suffix}")
    if status == 413:
        raise PayloadTooLarge(what)
    if status in (401, 403):
        raise TransientSinkError(f"{what}: HTTP {status}, credentials refused; check them{suffix}")
    if status in (408, 429) or status >= 500:
        raise TransientSinkError(f"{what}: HTTP {status}{suffix}", retry_after=resp.retry_after)
    raise PermanentSinkError(f"{what}: HTTP {status}{suffix}")


def check_healthy(resp: HttpResponse, what: str, detail: str = "") -> None:
    """A health check's answer: 2xx passes; anything else raises as ``check_status`` classifies it
    (always a ``SinkError``: a 413 here is the receiver's problem, not a batch to split)."""
    try:
        check_status(resp, what, detail)
    except PayloadTooLarge:
        raise PermanentSinkError(f"{what}: HTTP 413") from None


SendAttempt = Callable[[Sequence[Event]], Awaitable[SendResult]]


async def send_halving(events: Sequence[Event], attempt: SendAttempt) -> SendResult:
    """Run ``attempt``; on 413 split the batch in halves (recursively, at most log2(n) deep).

    Once one half is delivered, a transient failure of the other is reported as ``retry`` for its
    events instead of raised, so the delivered half is not sent twice.
    """
    try:
        return await attempt(events)
    except PayloadTooLarge:
        if len(events) == 1:
            return SendResult(rejected={0: "HTTP 413: the event alone exceeds the receiver's size limit"})
    mid = len(events) // 2
    left = await send_halving(events[:mid], attempt)
    try:
        right = await send_halving(events[mid:], attempt)
    except TransientSinkError:
        right = SendResult(retry=list(range(len(events) - mid)))
    return SendResult(
        rejected={**left.rejected, **{i + mid: r for i, r in right.rejected.items()}},
        retry=[*left.retry, *(i + mid for i in right.retry)],
    )


class HttpClient:
    """One ``aiohttp.ClientSession`` (opened by ``start``, closed by ``aclose``) for one sink."""

    @classmethod
    def for_sink(cls, config: HttpCommonConfig, clock: Clock) -> HttpClient:
        """The client an HTTP sink's common keys describe (TLS, timeout, compression, proxy)."""
        proxy = config.proxy_url.get_secret_value() if config.proxy_url else None
        return cls(
            config.name,
            config.tls,
            config.timeout_secs,
            config.compression == "gzip",
            clock,
            proxy_url=proxy,
        )

    def __init__(
        self,
        sink: str,
        tls: TlsConfig,
        timeout_secs: float,
        gzip_bodies: bool,
        clock: Clock,
        proxy_url: str | None = None,
    ) -> None:
        self._clock = clock
        self._proxy = proxy_url or None
        self._ssl = client_context(tls, sink)
        self._timeout = aiohttp.ClientTimeout(total=timeout_secs)
        self._gzip = gzip_bodies
        self._session: aiohttp.ClientSession | None = None

    def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=8),
                timeout=self._timeout,
                # No trust_env (it would also read ~/.netrc): the proxy, configured or from
                # HTTPS_PROXY/HTTP_PROXY/NO_PROXY, is passed per request, as the Graph client does.
                auto_decompress=True,
            )

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def post(
        self,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        what: str,
        params: Mapping[str, str] | None = None,
    ) -> HttpResponse:
        """POST ``body`` (gzipped if configured). Raises ``TransientSinkError`` on network errors."""
        hdrs = dict(headers)
        if self._gzip:
            hdrs["Content-Encoding"] = "gzip"
            if len(body) > _GZIP_OFF_LOOP_BYTES:
                body = await asyncio.to_thread(gzip.compress, body, 6)
            else:
                body = gzip.compress(body, 6)
        return await self.request("POST", url, what, headers=hdrs, body=body, params=params)

    async def request(
        self,
        method: str,
        url: str,
        what: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        params: Mapping[str, str] | None = None,
    ) -> HttpResponse:
        """One request, its answer read to the end (bounded). Raises ``TransientSinkError`` when no
        answer came: connection refused or reset, TLS failure, timeout, an oversized answer."""
        self.start()
        assert self._session is not None
        try:
            async with self._session.request(
                method,
                url,
                data=body,
                headers=headers,
                params=params,
                proxy=self._proxy or env_proxy(url),
                allow_redirects=False,  # see the module docstring
            ) as resp:
                # StreamReader.read(n) returns what is buffered, not n bytes: read to EOF, bounded.
                chunks: list[bytes] = []
                size = 0
                async for chunk in resp.content.iter_chunked(65536):
                    size += len(chunk)
                    if size > MAX_RESPONSE_BYTES:
                        raise TransientSinkError(f"{what}: response larger than {MAX_RESPONSE_BYTES} bytes")
                    chunks.append(chunk)
                got = CIMultiDict(resp.headers)
                waits = parse_retry_after(got.get("Retry-After"), self._clock)
                return HttpResponse(resp.status, got, b"".join(chunks), waits, safe_url(url))
        except TimeoutError:
            raise TransientSinkError(f"{what}: timed out after {self._timeout.total}s") from None
        except aiohttp.ClientError as exc:
            raise TransientSinkError(f"{what}: {_describe(exc)}") from None


def basic_auth(username: str, password: str) -> str:
    """An ``Authorization`` header value for HTTP basic auth (RFC 7617, UTF-8)."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


def safe_url(url: str) -> str:
    """``url`` without user info, query and fragment (for messages)."""
    try:
        u = URL(url)
        return str(u.with_user(None).with_password(None).with_query(None).with_fragment(None))
    except (ValueError, TypeError):
        return "(unparsable URL)"


def _redirect_target(base: str, location: str) -> str:
    """A redirect's ``Location`` resolved against the URL asked, in the safe form. A malformed one
    (``http://[bad``, a port above 65535) is named as such, never quoted: it may carry a secret."""
    try:
        return safe_url(str(URL(base).join(URL(location))))
    except (ValueError, TypeError):
        return "(unparsable Location)"


def _describe(exc: aiohttp.ClientError) -> str:
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"certificate verification failed ({exc.certificate_error.__class__.__name__})"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {exc.host}:{exc.port}: {exc.strerror or type(exc.os_error).__name__}"
    return type(exc).__name__
