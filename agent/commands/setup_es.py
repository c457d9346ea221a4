"""``siem-agent setup elasticsearch``: install the receiving side of each elasticsearch sink.

For every ``elasticsearch`` sink of the configuration (or the one ``--sink`` names): ``GET /`` tells
Elasticsearch from OpenSearch, then each resource of :func:`agent.commands.es_content.resources` is
read (``GET``) and written (``PUT``) only when absent or different. The content carries its hash in
``_meta`` (pipelines: in the description), so a second run reports ``unchanged`` and writes nothing:
idempotent, like Beats' ``setup``. One line per resource; the first failure stops that sink (an index
template naming a component that failed would fail too) and makes the command exit 1. The sink's own
credentials, TLS and proxy are used; no secret is ever printed. The APIs followed are Elasticsearch's
documented ``_component_template``, ``_index_template`` and ``_ingest/pipeline`` REST APIs (which
OpenSearch shares).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp
import orjson

from agent.commands.es_content import Flavor, Resource, resources
from agent.proxies import env_proxy
from agent.sinks.config import ElasticsearchSinkConfig
from agent.sinks.http.client import basic_auth, safe_url
from agent.sinks.tls import client_context


class SetupError(Exception):
    """A step failed; the message is safe to print (no secret, no body we sent)."""


class _Cluster:
    """The few REST calls setup needs, with the sink's auth, TLS and proxy."""

    def __init__(self, sink: ElasticsearchSinkConfig, session: aiohttp.ClientSession) -> None:
        self._base = sink.url.rstrip("/")
        self._session = session
        self._proxy = sink.proxy_url.get_secret_value() if sink.proxy_url else env_proxy(self._base)
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if sink.api_key is not None:
            self._headers["Authorization"] = "ApiKey " + sink.api_key.get_secret_value()
        elif sink.username is not None and sink.password is not None:
            self._headers["Authorization"] = basic_auth(sink.username, sink.password.get_secret_value())

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        data = None if body is None else orjson.dumps(body)
        try:
            async with self._session.request(
                method, self._base + path, data=data, headers=self._headers, proxy=self._proxy
            ) as resp:
                raw = await resp.read()
        except TimeoutError:
            raise SetupError(f"{method} {path}: timed out") from None
        except aiohttp.ClientError as exc:
            raise SetupError(f"cannot reach {safe_url(self._base)}: {type(exc).__name__}") from None
        try:
            return resp.status, orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            return resp.status, {}


def _reason(status: int, reply: Any) -> str:
    err = reply.get("error") if isinstance(reply, dict) else None
    if isinstance(err, dict):
        return f"HTTP {status} {err.get('type', '')}: {str(err.get('reason', ''))[:300]}"
    if isinstance(err, str):
        return f"HTTP {status}: {err[:300]}"
    hint = ", credentials refused" if status in (401, 403) else ""
    return f"HTTP {status}{hint}"


def flavor_of(info: Any) -> tuple[Flavor, str]:
    """``("opensearch" | "elasticsearch", version)`` from the reply of ``GET /``."""
    version = info.get("version", {}) if isinstance(info, dict) else {}
    number = str(version.get("number", "?")) if isinstance(version, dict) else "?"
    if isinstance(version, dict) and version.get("distribution") == "opensearch":
        return "opensearch", number
    return "elasticsearch", number


def installed_hash(res: Resource, reply: Any) -> str | None:
    """The content hash of what the cluster holds under ``res.name`` (``None``: absent or foreign)."""
    if not isinstance(reply, dict):
        return None
    if res.kind == "ingest pipeline":
        description = str(reply.get(res.name, {}).get("description", ""))
        return description.rpartition("(content ")[2].rstrip(")") or None
    key = "component_templates" if res.kind == "component template" else "index_templates"
    inner = "component_template" if res.kind == "component template" else "index_template"
    for item in reply.get(key, []):
        if isinstance(item, dict) and item.get("name") == res.name:
            meta = item.get(inner, {}).get("_meta", {})
            return str(meta.get("content_sha256")) if isinstance(meta, dict) else None
    return None


def wanted_hash(res: Resource) -> str:
    if res.kind == "ingest pipeline":
        return str(res.body["description"]).rpartition("(content ")[2].rstrip(")")
    return str(res.body["_meta"]["content_sha256"])


async def setup_sink(sink: ElasticsearchSinkConfig, say: Callable[[str], None]) -> bool:
    """Install one sink's content; print one line per step. ``False`` after a failure."""
    timeout = aiohttp.ClientTimeout(total=sink.timeout_secs)
    connector = aiohttp.TCPConnector(ssl=client_context(sink.tls, sink.name))
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        cluster = _Cluster(sink, session)
        try:
            status, info = await cluster.call("GET", "/")
            if status != 200:
                raise SetupError(f"GET /: {_reason(status, info)}")
            flavor, version = flavor_of(info)
            say(f"{sink.name}: {flavor} {version} at {safe_url(sink.url)}")
            for res in resources(sink.index, sink.data_stream, sink.codec.type, sink.ingest_pipeline, flavor):
                say(f"{sink.name}: {res.kind} {res.name}: {await _apply(cluster, res)}")
        except SetupError as exc:
            say(f"{sink.name}: FAILED: {exc}")
            return False
    return True


async def _apply(cluster: _Cluster, res: Resource) -> str:
    status, reply = await cluster.call("GET", res.path)
    if status == 200 and installed_hash(res, reply) == wanted_hash(res):
        return "unchanged"
    if status not in (200, 404):
        raise SetupError(f"{res.kind} {res.name}: GET {_reason(status, reply)}")
    put_status, put_reply = await cluster.call("PUT", res.path, res.body)
    if not 200 <= put_status < 300:
        raise SetupError(f"{res.kind} {res.name}: {_reason(put_status, put_reply)}")
    return "updated" if status == 200 else "created"


def run_setup(sinks: Sequence[ElasticsearchSinkConfig], say: Callable[[str], None]) -> bool:
    """Set up every sink in turn (a failing one does not stop the next); ``True`` if all succeeded."""

    async def go() -> bool:
        results = [await setup_sink(sink, say) for sink in sinks]
        return all(results)

    return asyncio.run(go())
