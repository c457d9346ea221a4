"""A fake Elasticsearch 8 (aiohttp, 127.0.0.1) speaking the template and pipeline APIs setup uses.

Follows Elasticsearch's documented REST API (elastic.co Elasticsearch Guide, "Index templates":
``PUT/GET _component_template/<name>``, ``PUT/GET _index_template/<name>``; "Ingest pipelines":
``PUT/GET _ingest/pipeline/<id>``; ``GET /`` cluster info): GET answers 404 with a
``resource_not_found_exception`` for a missing name (a pipeline: ``{}``), PUT stores the body and answers
``{"acknowledged": true}``, and an index template naming a component template that does not exist is
refused with 400 ``invalid_index_template_exception``. osmem-server covers templates but has no ingest
API, hence this fake. ``fail`` scripts a status for the next PUT of a path; every request is recorded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web


class FakeElasticsearch:
    def __init__(self) -> None:
        self.components: dict[str, Any] = {}
        self.indexes: dict[str, Any] = {}
        self.pipelines: dict[str, Any] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.fail: dict[str, int] = {}
        self.url = ""
        self._runner: web.AppRunner | None = None

    def _missing(self, what: str, name: str) -> web.Response:
        error = {"type": "resource_not_found_exception", "reason": f"{what} matching [{name}] not found"}
        return web.json_response({"error": error, "status": 404}, status=404)

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.path, dict(request.headers)))
        parts = request.path.strip("/").split("/")
        if request.method == "GET" and parts == [""]:
            return web.json_response(
                {"name": "es01", "version": {"number": "8.15.0", "build_flavor": "default"}}
            )
        if request.method == "PUT" and request.path in self.fail:
            status = self.fail.pop(request.path)
            error = {"type": "illegal_argument_exception", "reason": "scripted failure"}
            return web.json_response({"error": error, "status": status}, status=status)
        if parts[0] == "_component_template" and len(parts) == 2:
            return await self._template(request, parts[1], self.components, "component_template")
        if parts[0] == "_index_template" and len(parts) == 2:
            if request.method == "PUT":
                body = await request.json()
                missing = [c for c in body.get("composed_of", []) if c not in self.components]
                if missing:
                    reason = f"index template specifies component templates {missing} that do not exist"
                    error = {"type": "invalid_index_template_exception", "reason": reason}
                    return web.json_response({"error": error, "status": 400}, status=400)
            return await self._template(request, parts[1], self.indexes, "index_template")
        if parts[:2] == ["_ingest", "pipeline"] and len(parts) == 3:
            name = parts[2]
            if request.method == "PUT":
                self.pipelines[name] = await request.json()
                return web.json_response({"acknowledged": True})
            if name not in self.pipelines:
                return web.json_response({}, status=404)
            return web.json_response({name: self.pipelines[name]})
        return web.json_response({"error": "no handler"}, status=400)

    async def _template(
        self, request: web.Request, name: str, store: dict[str, Any], kind: str
    ) -> web.Response:
        if request.method == "PUT":
            store[name] = await request.json()
            return web.json_response({"acknowledged": True})
        if name not in store:
            return self._missing(kind.replace("_", " "), name)
        return web.json_response({f"{kind}s": [{"name": name, kind: store[name]}]})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def fake_es() -> AsyncIterator[FakeElasticsearch]:
    server = FakeElasticsearch()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
