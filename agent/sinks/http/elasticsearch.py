"""Elasticsearch / OpenSearch ``POST /_bulk`` with idempotent ``create`` actions.

Every document gets ``_id = sha256(id + "\\x1f" + lastUpdateDateTime)`` as hex, truncated to 32
characters (128 bits): the same alert *version* always maps to the same ``_id``, so a replay after a
timeout or a restart cannot store it twice. ``create`` on an existing ``_id`` answers per-item 409,
which counts as delivered. A new ``lastUpdateDateTime`` (an updated alert) is a new document.

The bulk reply is HTTP 200 even when items fail; items are judged one by one (in request order):
2xx and 409 delivered; 429 and 5xx retried (``SendResult.retry``); 404 (``index_not_found``: the
target is wrong, not the event) holds the whole batch as an endpoint error; anything else (e.g. 400
``mapper_parsing_exception``) rejected and dead-lettered with the error type and reason. A
whole-request 429/5xx is transient, 413 splits the batch, other 4xx reject it. With
``data_stream = true`` and the ``json`` codec each document gets ``@timestamp`` (the alert's
``lastUpdateDateTime``), which data streams require; the ``ecs`` codec writes its own. Auth is an
API key (``Authorization: ApiKey``) or basic; neither is logged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import orjson

from agent.errors import EndpointError, TransientSinkError
from agent.model import Event, alert_key
from agent.sinks.base import SendResult, SinkContext
from agent.sinks.config import ElasticsearchSinkConfig
from agent.sinks.http.client import (
    HttpClient,
    basic_auth,
    check_healthy,
    check_status,
    safe_url,
    send_halving,
)

_CONTENT_TYPE = "application/x-ndjson"  # the ES 8 compat media type is refused by OpenSearch (406)


def document_id(alert: Any) -> str:
    """The stable ``_id`` of one alert version (see the module docstring)."""
    alert_id, updated = alert_key(alert)
    return hashlib.sha256(f"{alert_id}\x1f{updated}".encode()).hexdigest()[:32]


class ElasticsearchSink:
    """Sends batches as one ``_bulk`` request of ``create`` actions."""

    def __init__(self, config: ElasticsearchSinkConfig, ctx: SinkContext) -> None:
        self.name = config.name
        self._cfg = config
        self._http = HttpClient.for_sink(config, ctx.clock)
        self._root = config.url.rstrip("/") + "/"
        self._url = config.url.rstrip("/") + "/_bulk"
        self._root_what = f"GET {safe_url(self._root)}"
        self._bulk_what = f"bulk {config.index} at {safe_url(self._url)}"
        self._headers = {"Content-Type": _CONTENT_TYPE, "Accept": "application/json"}
        if config.api_key is not None:
            self._headers["Authorization"] = "ApiKey " + config.api_key.get_secret_value()
        if config.username is not None and config.password is not None:
            self._headers["Authorization"] = basic_auth(config.username, config.password.get_secret_value())
        # The raw Graph alert has no @timestamp; ECS documents bring their own.
        self._stamp = config.data_stream and config.codec.type == "json"
        self._params = {"refresh": config.refresh} if config.refresh != "false" else None

    def body(self, events: Sequence[Event]) -> bytes:
        """The NDJSON bulk body, final newline included."""
        lines = []
        for e in events:
            action = {"create": {"_index": self._cfg.index, "_id": document_id(e.alert)}}
            lines.append(orjson.dumps(action))
            lines.append(self._document(e))
        lines.append(b"")
        return b"\n".join(lines)

    def _document(self, e: Event) -> bytes:
        if not self._stamp:
            return e.payload
        stamp = orjson.dumps({"@timestamp": str(e.alert.get("lastUpdateDateTime", ""))})
        body = e.payload.strip()
        if body == b"{}":
            return stamp
        # Both are JSON objects (a JSON codec): splice the field in front without re-parsing.
        return stamp[:-1] + b"," + body[1:]

    async def start(self) -> None:
        self._http.start()

    async def healthcheck(self) -> str:
        """``GET /`` with the sink's credentials: the cluster answers 2xx to a client it accepts."""
        what = self._root_what
        headers = {k: v for k, v in self._headers.items() if k != "Content-Type"}
        resp = await self._http.request("GET", self._root, what, headers=headers)
        try:
            reply = orjson.loads(resp.body) if resp.body else None
        except orjson.JSONDecodeError:
            reply = None
        check_healthy(resp, what, _error_summary(reply))
        version = reply.get("version") if isinstance(reply, dict) else None
        number = version.get("number") if isinstance(version, dict) else None
        return f"reachable: {what}: HTTP {resp.status}" + (f" (version {str(number)[:40]})" if number else "")

    async def send(self, events: Sequence[Event]) -> SendResult:
        return await send_halving(events, self._send_once)

    async def _send_once(self, events: Sequence[Event]) -> SendResult:
        what = self._bulk_what
        resp = await self._http.post(self._url, self.body(events), self._headers, what, params=self._params)
        try:
            reply = orjson.loads(resp.body) if resp.body else {}
        except orjson.JSONDecodeError:
            reply = None
        if not 200 <= resp.status < 300:
            check_status(resp, what, _error_summary(reply))
        if not isinstance(reply, dict) or not isinstance(reply.get("items"), list):
            raise TransientSinkError(f"{what}: HTTP {resp.status} with a malformed reply")
        items = reply["items"]
        if len(items) != len(events):
            raise TransientSinkError(f"{what}: {len(items)} items in the reply for {len(events)} sent")
        if not reply.get("errors"):
            return SendResult()
        result = SendResult()
        for i, item in enumerate(items):
            outcome: Any = next(iter(item.values()), None) if isinstance(item, dict) else None
            status = outcome.get("status", 0) if isinstance(outcome, dict) else 0
            status = status if isinstance(status, int) else 0
            if status == 404:
                # index_not_found (auto-creation off, a missing data stream): the target is wrong,
                # not the event. Hold the batch; what was created meanwhile answers 409 next time.
                raise EndpointError(f"{what}: bulk item HTTP 404: {_error_summary(outcome)}; batch held")
            if 200 <= status < 300 or status == 409:
                continue
            if status == 429 or status >= 500 or status == 0:
                result.retry.append(i)
            else:
                result.rejected[i] = f"bulk item HTTP {status}: {_error_summary(outcome)}"
        return result

    async def aclose(self) -> None:
        await self._http.aclose()


def _error_summary(reply: Any) -> str:
    """``type: reason`` of an Elasticsearch error object, bounded."""
    if not isinstance(reply, dict):
        return ""
    err = reply.get("error")
    if isinstance(err, dict):
        return f"{err.get('type', '')}: {str(err.get('reason', ''))[:300]}"
    if isinstance(err, str):
        return err[:300]
    return ""


__all__ = ["ElasticsearchSink", "document_id"]
