"""A Graph response body, read as untrusted input: bounded in size, decompressed by us, parsed safely.

* Size: at most ``limit`` bytes on the wire (a larger ``Content-Length`` is refused before reading)
  and at most ``limit`` bytes once decompressed; the session does not decompress by itself
  (``auto_decompress=False``), so a few hundred kilobytes of gzip never expand into gigabytes.
* Encodings: the client asks for ``gzip, deflate`` only; ``identity`` and those two are accepted.
* JSON: orjson, falling back to the standard library for valid JSON orjson refuses (a lone surrogate
  escape such as ``"\\ud800"``, which Graph's .NET serializer can write for alert text). Nesting
  deeper than either parser allows (orjson: 1024 levels; the standard library raises
  ``RecursionError`` near 1000) makes the page malformed instead of crashing the poll.

Every failure here is a ``TransientSourceError`` (``BodyError``): the request is retried a bounded
number of times, then the poll fails and the stream backs off.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

import aiohttp
import orjson

from agent.errors import TransientSourceError

#: What the client asks for; anything else Graph answered with is refused.
ACCEPT_ENCODING = "gzip, deflate"
_READ_CHUNK = 1 << 16


class BodyError(TransientSourceError):
    """A response body the client will not use (too large, badly encoded, not a JSON object)."""


async def read_limited(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The raw body of ``resp``, refusing more than ``limit`` bytes (raises ``BodyError``)."""
    length = resp.content_length
    if length is not None and length > limit:
        raise BodyError(f"Content-Length {length} exceeds max_response_bytes ({limit})")
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(_READ_CHUNK):
        size += len(chunk)
        if size > limit:
            raise BodyError(f"response body exceeds max_response_bytes ({limit}) on the wire")
        chunks.append(chunk)
    return b"".join(chunks)


def inflate(body: bytes, encoding: str, limit: int) -> bytes:
    """``body`` decoded from its ``Content-Encoding``, at most ``limit`` bytes (raises ``BodyError``)."""
    coding = encoding.strip().lower()
    if coding in ("", "identity"):
        return body
    if coding in ("gzip", "x-gzip"):
        wbits = 16 + zlib.MAX_WBITS
    elif coding == "deflate":
        # RFC 9110 deflate is zlib-wrapped; some servers send raw deflate. Auto-detect the wrapper.
        wbits = zlib.MAX_WBITS if body[:1] == b"\x78" else -zlib.MAX_WBITS
    else:
        raise BodyError(f"unsupported Content-Encoding {encoding[:40]!r}")
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise BodyError(f"corrupt {coding} body: {exc}") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise BodyError(f"{coding} body expands beyond max_response_bytes ({limit})")
    if not inflater.eof:
        raise BodyError(f"truncated {coding} body")
    return out


def parse_object(body: bytes) -> dict[str, Any]:
    """The JSON object in ``body`` (raises ``BodyError``: invalid, too deeply nested, or not an object)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError) as exc:
            what = "nested too deeply" if isinstance(exc, RecursionError) else "malformed JSON"
            raise BodyError(f"{what} ({len(body)} bytes)") from None
    if not isinstance(doc, dict):
        raise BodyError("a body that is not a JSON object")
    return doc


def graph_error(body: bytes) -> dict[str, Any]:
    """The ``error`` object of Graph's error answer (``{"error": {"code", "message", "innerError"}}``);
    ``{}`` when ``body`` has none (junk, not JSON, no such member)."""
    try:
        err = parse_object(body).get("error")
    except BodyError:
        return {}
    return err if isinstance(err, dict) else {}
