"""What a write call makes of Graph's answer body: parsed like a page, never a crash."""

from __future__ import annotations

from typing import Any

import pytest

from agent.sources.graph.client import GraphClient, GraphReply, _error_code
from agent.sources.graph.writes import GraphWrites, WriteUncertain, _error


class OneAnswer:
    """Stands in for ``GraphClient``: every ``send`` gets the same reply."""

    def __init__(self, status: int, body: bytes) -> None:
        self.reply = GraphReply(status, body, "req-1", "creq-1", None, "token")

    async def send(self, *args: Any, **kwargs: Any) -> GraphReply:
        return self.reply


def writes(status: int, body: bytes) -> GraphWrites:
    client: GraphClient = OneAnswer(status, body)  # type: ignore[assignment]
    return GraphWrites(client, "https://127.0.0.1:1")


async def test_a_deeply_nested_2xx_answer_is_uncertain_not_a_recursion_error() -> None:
    deep = b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(WriteUncertain, match="nested too deeply"):
        await writes(200, deep).update("alert", "a1", {"status": "resolved"})


async def test_write_answers_still_parse_as_before() -> None:
    assert await writes(204, b"").update("alert", "a1", {"status": "resolved"}) == {}
    assert await writes(200, b'{"id": "a1", "t": "\\ud800"}').get("alert", "a1") == {
        "id": "a1",
        "t": "\ud800",
    }
    with pytest.raises(WriteUncertain):
        await writes(200, b"[1]").get("alert", "a1")
    with pytest.raises(WriteUncertain):
        await writes(200, b"{not json").get("alert", "a1")


def test_one_reading_of_graphs_error_body() -> None:
    body = b'{"error": {"code": "BadRequest", "message": "no", "innerError": {"request-id": "r9"}}}'
    assert _error_code(body) == "BadRequest"
    err = _error(GraphReply(400, body, "-", "c", None, "t"))
    assert (err.code, err.message, err.request_id) == ("BadRequest", "no", "r9")
    for junk in (b"", b"[]", b'{"error": "x"}', b'{"error": ' + b"[" * 5000 + b"]" * 5000 + b"}"):
        assert _error_code(junk) == "no error code"
        assert _error(GraphReply(400, junk, "-", "c", None, "t")).code == "unknown"
