"""Generic HTTP (NDJSON) sink against an in-test aiohttp receiver."""

from __future__ import annotations

import base64
import logging

import pytest

from agent.errors import PermanentSinkError, TransientSinkError
from agent.sinks import SinkContext
from tests.fakes.http import NdjsonReceiver
from tests.sinks.conftest import build, events, ids_of

SECRET = "bearer-9d1e-do-not-log"


async def test_ndjson_gzip_headers_bearer(ndjson_receiver: NdjsonReceiver, ctx: SinkContext) -> None:
    """One POST per batch: NDJSON with final newline, gzip, custom headers, bearer auth."""
    sink = build(ndjson_receiver.table(headers={"X-Source": "siem-agent"}, bearer_token=SECRET), ctx)
    await sink.start()
    await sink.send(events(3))
    assert ids_of(ndjson_receiver.lines) == ids_of([e.payload for e in events(3)])
    h = ndjson_receiver.headers[0]
    assert h["Authorization"] == f"Bearer {SECRET}" and h["X-Source"] == "siem-agent"
    assert h["Content-Encoding"] == "gzip" and h["Content-Type"] == "application/x-ndjson"
    await sink.aclose()
    await sink.aclose()


async def test_basic_auth(ndjson_receiver: NdjsonReceiver, ctx: SinkContext) -> None:
    """username/password become HTTP basic auth."""
    sink = build(ndjson_receiver.table(username="u", password="p", compression="none"), ctx)
    await sink.send(events(1))
    assert ndjson_receiver.headers[0]["Authorization"] == "Basic " + base64.b64encode(b"u:p").decode()
    await sink.aclose()


@pytest.mark.parametrize("status", [500, 503, 429, 401, 403])
async def test_transient_statuses(
    ndjson_receiver: NdjsonReceiver, ctx: SinkContext, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    """5xx, 429 (with Retry-After), 401 and 403 are transient; no message quotes the secret."""
    caplog.set_level(logging.DEBUG)
    ndjson_receiver.statuses.append(status)
    sink = build(ndjson_receiver.table(bearer_token=SECRET), ctx)
    with pytest.raises(TransientSinkError) as info:
        await sink.send(events(1))
    if status == 429:
        assert info.value.retry_after == 3
    leaked = SECRET in str(info.value) or SECRET in caplog.text
    assert not leaked, "the secret leaked into the error or the log"
    await sink.aclose()


async def test_bad_request_is_permanent(ndjson_receiver: NdjsonReceiver, ctx: SinkContext) -> None:
    """A 400 rejects the batch."""
    ndjson_receiver.statuses.append(400)
    sink = build(ndjson_receiver.table(), ctx)
    with pytest.raises(PermanentSinkError, match="400"):
        await sink.send(events(2))
    await sink.aclose()


async def test_413_halves_down_to_single_rejects(ndjson_receiver: NdjsonReceiver, ctx: SinkContext) -> None:
    """413 splits; an event refused alone is rejected, the others delivered."""
    ndjson_receiver.statuses.extend([413, 200, 413])  # [0,1,2,3] -> [0,1] ok, [2,3] -> 413 -> [2] ok, [3] ok
    sink = build(ndjson_receiver.table(), ctx)
    result = await sink.send(events(4))
    assert not result.rejected and not result.retry
    assert len(ndjson_receiver.lines) == 4
    ndjson_receiver.statuses.extend([413])
    result = await sink.send(events(1, start=9))
    assert list(result.rejected) == [0]
    await sink.aclose()
