"""Splunk HTTP Event Collector: ``POST /services/collector/event`` with indexer acknowledgement.

Each event becomes one JSON envelope ``{"time", "host", "source", "sourcetype", "index", "fields",
"event"}``; a batch is the envelopes concatenated, one per line. ``time`` is the alert's
``lastUpdateDateTime`` in epoch seconds (with fraction; absent when the alert has none, so Splunk
uses receipt time). ``event`` is the codec's message: with a JSON codec the message is embedded as a
JSON *object* (searchable fields, no double encoding); with any other codec (CEF, syslog) it is a
JSON *string*.

Delivery. With ``acknowledgement = true`` (the token needs ``useACK``) every request carries
``X-Splunk-Request-Channel: <uuid>`` and a 200 returns an ``ackId``; ``send`` then polls
``/services/collector/ack`` until the id reports ``true`` (indexed), bounded by ``ack_timeout_secs``,
after which the batch is re-sent (``TransientSinkError``; duplicates possible, loss not). A 200
without an ``ackId`` (acknowledgement disabled on the token) counts as delivered: Splunk accepted the
batch into its pipeline. Response codes follow Splunk's table (formats.md A4): codes 6, 12, 13 and 15
reject the event at ``invalid-event-number`` (earlier events were ingested; later ones are retried),
8, 9, 18-20 and 5xx are transient, auth failures (1-4) hold the batch (see ``http.client``), any other
4xx rejects the batch. The token is sent only in the ``Authorization`` header and never logged.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from collections.abc import Sequence
from typing import Any

import orjson

from agent.codecs.config import CodecConfig
from agent.errors import PermanentSinkError, TransientSinkError
from agent.model import Event
from agent.sinks.base import SendResult, SinkContext
from agent.sinks.config import JSON_CODECS, SplunkHecSinkConfig
from agent.sinks.http.client import (
    HttpClient,
    HttpResponse,
    check_healthy,
    check_status,
    safe_url,
    send_halving,
)
from agent.timestamps import parse

log = logging.getLogger(__name__)

_EVENT_CODES = {6, 12, 13, 15}  # the event itself is bad: reject it, keep the rest
_TRANSIENT_CODES = {8, 9, 18, 19, 20}


def epoch_seconds(ts: Any) -> float | None:
    """``lastUpdateDateTime`` as epoch seconds (microsecond precision), or ``None`` if unparsable."""
    if not isinstance(ts, str):
        return None
    try:
        return round(parse(ts).timestamp(), 6)
    except ValueError:
        return None


def default_sourcetype(codec: CodecConfig) -> str:
    """The sourcetype Splunk content expects for ``codec`` (docs/splunk.md, TA-siem-agent)."""
    if codec.type == "json":
        return "ms365:defender:incident:alerts"  # Splunk_TA_MS_Security parses this alerts_v2 JSON
    inner = getattr(codec, "msg", codec)
    if inner.type == "cef":
        return "microsoft:graph:security:alert:cef"
    return "microsoft:graph:security:alert"


class SplunkHecSink:
    """Sends batches to one HEC endpoint on one ack channel."""

    def __init__(self, config: SplunkHecSinkConfig, ctx: SinkContext) -> None:
        self.name = config.name
        self._cfg = config
        self._http = HttpClient.for_sink(config, ctx.clock)
        base = config.url.rstrip("/")
        self._event_url = base + "/services/collector/event"
        self._ack_url = base + "/services/collector/ack"
        self._health_url = base + "/services/collector/health"
        self._event_what = f"HEC {safe_url(self._event_url)}"
        self._ack_what = f"HEC ack {safe_url(self._ack_url)}"
        self._health_what = f"HEC health {safe_url(self._health_url)}"
        self._channel = str(uuid.uuid4())
        self._json = config.codec.type in JSON_CODECS
        self._meta: dict[str, Any] = {
            "host": config.host or socket.gethostname(),
            "source": config.source,
            "sourcetype": config.sourcetype or default_sourcetype(config.codec),
        }
        if config.index:
            self._meta["index"] = config.index
        if config.fields:
            self._meta["fields"] = dict(config.fields)

    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": "Splunk " + self._cfg.token.get_secret_value(),
            "X-Splunk-Request-Channel": self._channel,
            "Content-Type": "application/json",
        }

    def envelope(self, event: Event) -> bytes:
        """One HEC event envelope for ``event`` (JSON, no trailing newline)."""
        env: dict[str, Any] = {}
        t = epoch_seconds(event.alert.get("lastUpdateDateTime"))
        if t is not None:
            env["time"] = t
        env.update(self._meta)
        env["event"] = (
            orjson.Fragment(event.payload) if self._json else event.payload.decode("utf-8", "replace")
        )
        return orjson.dumps(env)

    async def start(self) -> None:
        self._http.start()

    async def healthcheck(self) -> str:
        """``GET /services/collector/health``: 200 (code 17) while HEC accepts data; 503 when its queues
        are full (code 18) or indexer acknowledgement is unavailable (code 19)."""
        what = self._health_what
        resp = await self._http.request("GET", self._health_url, what)
        try:
            reply = orjson.loads(resp.body) if resp.body else {}
        except orjson.JSONDecodeError:
            reply = {}
        code = reply.get("code") if isinstance(reply, dict) else None
        text = str(reply.get("text", ""))[:200] if isinstance(reply, dict) else ""
        check_healthy(resp, what, f"code {code}: {text}" if code is not None else "")
        return f"reachable: {what}: HTTP {resp.status}" + (
            f" (code {code}: {text})" if code is not None else ""
        )

    async def send(self, events: Sequence[Event]) -> SendResult:
        return await send_halving(events, self._send_once)

    async def _send_once(self, events: Sequence[Event]) -> SendResult:
        body = b"\n".join(self.envelope(e) for e in events)
        what = self._event_what
        resp = await self._http.post(self._event_url, body, self._headers(), what)
        reply = _json(resp)
        code = reply.get("code")
        text = str(reply.get("text", ""))[:200]
        if resp.status == 200 and code in (0, None):
            ack_id = reply.get("ackId")
            if self._cfg.acknowledgement and isinstance(ack_id, int):
                await self._await_ack(ack_id)
            return SendResult()
        detail = f"code {code}: {text}" if code is not None else ""
        if code in _EVENT_CODES and isinstance(reply.get("invalid-event-number"), int):
            bad = int(reply["invalid-event-number"])
            if 0 <= bad < len(events):
                return SendResult(rejected={bad: f"HEC {detail}"}, retry=list(range(bad + 1, len(events))))
        if code in _TRANSIENT_CODES:
            raise TransientSinkError(f"{what}: HTTP {resp.status}, {detail}", resp.retry_after)
        check_status(resp, what, detail)
        raise PermanentSinkError(f"{what}: unexpected reply HTTP {resp.status}, {detail}")

    async def _await_ack(self, ack_id: int) -> None:
        """Poll the ack endpoint until ``ack_id`` is indexed; ``TransientSinkError`` on timeout."""
        deadline = time.monotonic() + self._cfg.ack_timeout_secs
        interval = min(0.05, self._cfg.ack_poll_interval_secs)
        body = orjson.dumps({"acks": [ack_id]})
        what = self._ack_what
        while True:
            resp = await self._http.post(
                self._ack_url, body, self._headers(), what, params={"channel": self._channel}
            )
            reply = _json(resp)
            if resp.status != 200:
                check_status(resp, what, f"code {reply.get('code')}: {str(reply.get('text', ''))[:200]}")
                raise TransientSinkError(f"{what}: HTTP {resp.status}")
            acks = reply.get("acks")
            if isinstance(acks, dict) and acks.get(str(ack_id)) is True:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TransientSinkError(
                    f"HEC did not acknowledge indexing of ackId {ack_id} within {self._cfg.ack_timeout_secs}s"
                )
            await asyncio.sleep(min(interval, remaining))
            interval = min(interval * 2, self._cfg.ack_poll_interval_secs)

    async def aclose(self) -> None:
        await self._http.aclose()


def _json(resp: HttpResponse) -> dict[str, Any]:
    try:
        value = orjson.loads(resp.body) if resp.body else {}
    except orjson.JSONDecodeError:
        if 200 <= resp.status < 300:
            raise TransientSinkError(f"HEC: HTTP {resp.status} with a malformed body") from None
        return {}
    return value if isinstance(value, dict) else {}
