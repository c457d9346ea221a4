"""Generic HTTP: one POST per batch, the codec's messages as NDJSON (one per line, final newline).

Delivery: any 2xx means the receiver has the batch. Failures are classified as in
``agent.sinks.http.client`` (429/5xx/401/403 transient, 413 split, other 4xx reject the batch).
Auth is a bearer token or basic; extra headers are secrets too and never logged.
"""

from __future__ import annotations

from collections.abc import Sequence

from agent.codecs import build_framer
from agent.model import Event
from agent.sinks.base import SendResult, SinkContext
from agent.sinks.config import HttpSinkConfig
from agent.sinks.http.client import HttpClient, basic_auth, check_status, safe_url, send_halving


class HttpSink:
    """POSTs NDJSON batches to one URL."""

    def __init__(self, config: HttpSinkConfig, ctx: SinkContext) -> None:
        self.name = config.name
        self._cfg = config
        self._http = HttpClient.for_sink(config, ctx.clock)
        self._headers = {k: v.get_secret_value() for k, v in config.headers.items()}
        self._headers["Content-Type"] = config.content_type
        if config.bearer_token is not None:
            self._headers["Authorization"] = "Bearer " + config.bearer_token.get_secret_value()
        if config.username is not None and config.password is not None:
            self._headers["Authorization"] = basic_auth(config.username, config.password.get_secret_value())
        self._what = f"POST {safe_url(config.url)}"
        self._head_what = f"HEAD {safe_url(config.url)}"
        self._framer = build_framer("newline")

    async def start(self) -> None:
        self._http.start()

    async def healthcheck(self) -> str:
        """``HEAD`` on the URL: any HTTP answer but a redirect proves the host is reachable (no data is
        sent; a receiver may well answer 404 or 405 to a HEAD on a POST-only URL)."""
        what = self._head_what
        resp = await self._http.request("HEAD", self._cfg.url, what, headers=self._headers)
        if 300 <= resp.status < 400:
            check_status(resp, what)
        return f"reachable: {what}: HTTP {resp.status}"

    async def send(self, events: Sequence[Event]) -> SendResult:
        return await send_halving(events, self._send_once)

    async def _send_once(self, events: Sequence[Event]) -> SendResult:
        body = b"".join([self._framer.frame(e.payload) for e in events])
        resp = await self._http.post(self._cfg.url, body, self._headers, self._what)
        check_status(resp, self._what)
        return SendResult()

    async def aclose(self) -> None:
        await self._http.aclose()
