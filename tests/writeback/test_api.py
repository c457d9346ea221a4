"""The write-back API in a running agent (in this process): routes, status codes, nothing sent to Graph
before a 202, durable 202s, the listener's limits, TLS and mutual TLS, audit lines without secrets."""

from __future__ import annotations

import asyncio
import logging
import ssl
import uuid
from pathlib import Path

import aiohttp
import orjson
import pytest

from agent.shard import owner
from agent.simulator.server import GraphSimulator, backdate, server_ssl_context, unavailable
from agent.simulator.tls import TlsFiles, make_client_cert, make_tls
from agent.simulator.writes import WriteFault
from agent.timestamps import format_dt
from tests.support.simulator import SimEnv
from tests.support.wait import until
from tests.writeback.helpers import OTHER_TOKEN, TOKEN, api, delivered, live_agent, writeback_table


class TestShards:
    async def test_a_source_of_another_shard_is_answered_421_naming_it(
        self, tmp_path: Path, graph_sim: SimEnv
    ) -> None:
        """Nothing is queued where nobody would execute it: 421 with the owning shard, Graph untouched."""
        far = next(f"far{i}" for i in range(100) if owner(f"far{i}", 2) != owner("sim", 2))
        other = graph_sim.source(name=far, tenant_id="another-tenant")
        shard = {"count": 2, "index": owner("sim", 2)}
        async with live_agent(tmp_path, graph_sim, top={"shard": shard}, more_sources=[other]) as live:
            status, body, headers = await api(
                live.port, "PATCH", f"/v1/sources/{far}/alerts/da1", {"status": "new"}
            )
            mine = await api(live.port, "PATCH", "/v1/sources/nope/alerts/da1", {"status": "new"})
        assert status == 421 and body["error"]["code"] == "misdirectedRequest"
        assert f"is polled by shard {owner(far, 2)}" in body["error"]["message"]
        assert headers["X-Siem-Agent-Shard"] == str(owner(far, 2))
        assert mine[0] == 404
        assert not [r for r in graph_sim.sim.requests if r.method != "GET" and "/security/" in r.path]
        assert not (tmp_path / "state" / "sources" / far).exists(), "another shard's source was touched"

    async def test_requests_queued_before_a_reshard_are_executed_by_their_replica(
        self, tmp_path: Path, tls_files: TlsFiles
    ) -> None:
        """A request this replica accepted while it owned ``far``; then ``far`` moved to the other shard:
        this replica still executes it (through far's app), it is not stranded in its queue."""
        sim = GraphSimulator(any_tenant=True)
        base = await sim.start(server_ssl_context(str(tls_files.cert), str(tls_files.key)))
        try:
            env = SimEnv(sim, base, tls_files)
            alert = sim.add_alerts(1, tenant="another-tenant")[0]["id"]
            far = next(f"far{i}" for i in range(100) if owner(f"far{i}", 2) != owner("sim", 2))
            index = owner("sim", 2)
            queue = tmp_path / "state" / f"wb.shard-{index}.writeback.jsonl"
            queue.parent.mkdir(parents=True)
            record = {"t": "req", "id": str(uuid.uuid4()), "at": format_dt(backdate(5)), "source": far}
            record |= {"entity": "alert", "target": alert, "changes": {"status": "resolved"}, "by": "siem"}
            queue.write_bytes(orjson.dumps(record) + b"\n")
            other = env.source(name=far, tenant_id="another-tenant")
            top = {"shard": {"count": 2, "index": index}}
            async with live_agent(tmp_path, env, top=top, more_sources=[other]):
                await until(lambda: sim.alerts[alert]["status"] == "resolved", 15, "the queued write")
            polled = {r.tenant for r in sim.graph_requests()}
            assert "another-tenant" not in polled, "the adopted source must not be polled"
        finally:
            await sim.stop()


class TestRoutesAndCodes:
    async def test_refusals_send_nothing_to_graph(self, tmp_path: Path, graph_sim: SimEnv) -> None:
        """401 (no/wrong token, other scheme), 404 (source, route, request), 400 (JSON, field, enum, id),
        413 (declared or streamed), 405: each as documented, and Graph sees no write at all."""
        alert = graph_sim.sim.add_alerts(1)[0]["id"]
        item = f"/v1/sources/sim/alerts/{alert}"
        async with live_agent(tmp_path, graph_sim, writeback_table(max_body_bytes=1024)) as live:
            port = live.port
            cases = [
                (401, await api(port, "PATCH", item, {"status": "resolved"}, token=None)),
                (401, await api(port, "PATCH", item, {"status": "resolved"}, token="nope")),
                (
                    401,
                    await api(
                        port,
                        "PATCH",
                        item,
                        {"status": "resolved"},
                        token=None,
                        headers={"Authorization": f"Basic {TOKEN}"},
                    ),
                ),
                (401, await api(port, "GET", "/v1/nothing-here", token=None)),
                (404, await api(port, "PATCH", f"/v1/sources/other/alerts/{alert}", {"status": "resolved"})),
                (404, await api(port, "GET", "/v1/nothing-here")),
                (404, await api(port, "GET", "/v1/requests/00000000-0000-0000-0000-000000000000")),
                (400, await api(port, "PATCH", item, raw=b"{not json")),
                (400, await api(port, "PATCH", item, {"status": "resolved", "severity": "high"})),
                (400, await api(port, "PATCH", item, {"status": "closed"})),
                (400, await api(port, "PATCH", item, {"determination": "compromisedUser"})),
                (400, await api(port, "PATCH", "/v1/sources/sim/alerts/bad%20id", {"status": "resolved"})),
                (400, await api(port, "POST", "/v1/sources/sim/alerts", {"status": "resolved"})),
                (413, await api(port, "PATCH", item, {"comment": "x" * 2000})),
                (405, await api(port, "DELETE", item)),
            ]
            async with aiohttp.ClientSession() as http:

                async def chunks():  # no Content-Length: aiohttp's limit applies while reading
                    for _ in range(8):
                        yield b" " * 512

                resp = await http.patch(
                    f"http://127.0.0.1:{port}{item}",
                    data=chunks(),
                    headers={"Authorization": f"Bearer {TOKEN}"},
                )
                cases.append((413, (resp.status, await resp.json(), dict(resp.headers))))
                resp.release()
        for want, (status, doc, headers) in cases:
            assert status == want, (want, doc)
            assert set(doc) == {"error"} and doc["error"]["code"] and doc["error"]["message"]
            assert headers.get("Connection", "").lower() == "close"
        assert cases[0][1][2]["WWW-Authenticate"].startswith("Bearer")
        assert "'compromisedAccount'" in cases[10][1][1]["error"]["message"]
        assert graph_sim.sim.writes.requests() == [], "nothing reached Graph"
        assert not (tmp_path / "state" / "wb.writeback.jsonl").read_bytes(), "nothing was queued"

    async def test_every_route_queues_durably_and_is_delivered(
        self, tmp_path: Path, graph_sim: SimEnv
    ) -> None:
        """PATCH and POST on the item, POST on the collection (id in the body), incidents with customTags:
        202 + Location once journaled; GET shows done with the versions; the owner alone may read it."""
        sim = graph_sim.sim
        a, b, c = (x["id"] for x in sim.add_alerts(3))
        incident = sim.add_incidents(1)[0]["id"]
        async with live_agent(tmp_path, graph_sim) as live:
            port = live.port
            submitted = [
                await api(
                    port, "PATCH", f"/v1/sources/sim/alerts/{a}", {"status": "resolved", "comment": "c1"}
                ),
                await api(port, "POST", f"/v1/sources/sim/alerts/{b}", {"assignedTo": "kim@contoso.com"}),
                await api(
                    port, "POST", "/v1/sources/sim/alerts", {"id": c, "classification": "falsePositive"}
                ),
                await api(
                    port,
                    "PATCH",
                    f"/v1/sources/sim/incidents/{incident}",
                    {"status": "resolved", "customTags": ["closed-in-siem"]},
                ),
            ]
            journal = (tmp_path / "state" / "wb.writeback.jsonl").read_bytes()
            for status, doc, headers in submitted:
                assert (
                    status == 202
                    and doc["state"] in ("queued", "done")
                    and headers["Location"] == doc["status"]
                )
                assert doc["id"].encode() in journal
            states = [await live.wait_state(doc["id"], "done") for _, doc, _ in submitted]
            other = await api(port, "GET", submitted[0][1]["status"], token=OTHER_TOKEN)
        assert (
            states[0]["steps"] == {"comment": "sent", "update": "sent"}
            and states[0]["submittedBy"] == "splunk"
        )
        assert states[0]["graphVersions"][-1] == sim.alerts[a]["lastUpdateDateTime"]
        assert (
            sim.alerts[b]["assignedTo"] == "kim@contoso.com"
            and sim.alerts[c]["classification"] == "falsePositive"
        )
        assert sim.incidents[incident]["customTags"] == ["closed-in-siem"] and states[3]["kind"] == "incident"
        assert other[0] == 404, "a request is visible to the token that submitted it only"
        assert len(sim.writes.applied) == 5

    async def test_idempotency_key_and_a_full_queue(self, tmp_path: Path, graph_sim: SimEnv) -> None:
        """The same Idempotency-Key returns the first request; a full queue answers 503 + Retry-After."""
        sim = graph_sim.sim
        a, b = (x["id"] for x in sim.add_alerts(2))
        # Graph holds the first write's answer for a while (then 503): it stays unfinished meanwhile.
        sim.writes.faults.append(WriteFault(unavailable(503)))
        sim.writes.faults[0].fault.delay_secs = 2.0
        async with live_agent(tmp_path, graph_sim, writeback_table(queue_max_requests=1)) as live:
            key = {"Idempotency-Key": "splunk-sid-42"}
            first = await api(
                live.port, "PATCH", f"/v1/sources/sim/alerts/{a}", {"status": "resolved"}, headers=key
            )
            again = await api(
                live.port, "PATCH", f"/v1/sources/sim/alerts/{a}", {"status": "resolved"}, headers=key
            )
            full = await api(live.port, "PATCH", f"/v1/sources/sim/alerts/{b}", {"status": "resolved"})
            await live.wait_state(first[1]["id"], "done")
        assert first[0] == again[0] == 202 and again[1]["id"] == first[1]["id"]
        assert again[2]["Idempotent-Replayed"] == "true"
        assert full[0] == 503 and full[2]["Retry-After"] == "30" and full[1]["error"]["code"] == "queueFull"
        assert [w.body for w in sim.writes.applied] == [{"status": "resolved"}]

    async def test_graph_errors_come_back_in_the_request_state(
        self, tmp_path: Path, graph_sim: SimEnv
    ) -> None:
        """An unknown alert id: failed, with Graph's status, code, message and request-id."""
        async with live_agent(tmp_path, graph_sim) as live:
            _, doc, _ = await api(
                live.port, "PATCH", "/v1/sources/sim/alerts/da999_gone", {"status": "resolved"}
            )
            state = await live.wait_state(doc["id"], "failed")
        err = state["error"]
        assert (err["status"], err["code"]) == (404, "NotFound") and "was not found" in err["message"]
        assert len(err["requestId"]) == 36

    async def test_audit_lines_name_who_and_never_the_token(
        self, tmp_path: Path, graph_sim: SimEnv, caplog: pytest.LogCaptureFixture
    ) -> None:
        """queued / done / refused lines carry who (token name), what and result; no token anywhere."""
        caplog.set_level(logging.DEBUG)
        alert = graph_sim.sim.add_alerts(1)[0]["id"]
        async with live_agent(tmp_path, graph_sim) as live:
            _, doc, _ = await api(
                live.port,
                "PATCH",
                f"/v1/sources/sim/alerts/{alert}",
                {"status": "resolved", "comment": "secret-ish text"},
            )
            await live.wait_state(doc["id"], "done")
            await api(
                live.port,
                "PATCH",
                f"/v1/sources/sim/alerts/{alert}",
                {"status": "resolved"},
                token="not-" + TOKEN,
            )
        audit = [r for r in caplog.records if r.name == "agent.writeback.audit"]
        results = [(getattr(r, "who", None), getattr(r, "result", None)) for r in audit]
        assert results == [("splunk", "queued"), ("splunk", "done"), ("-", "unauthenticated")]
        assert audit[0].changes == "status=resolved" and audit[0].comment_chars == 15  # type: ignore[attr-defined]
        everything = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
        leaked = TOKEN in everything or OTHER_TOKEN in everything or "secret-ish" in everything
        assert not leaked, "a token leaked into the responses or the log"


class TestListener:
    async def test_connection_cap_and_header_deadline(self, tmp_path: Path, graph_sim: SimEnv) -> None:
        """Beyond max_connections a connection is closed at once; an idle one after header_timeout_secs."""
        table = writeback_table(max_connections=2, header_timeout_secs=0.5)
        async with live_agent(tmp_path, graph_sim, table) as live:
            idle = [await asyncio.open_connection("127.0.0.1", live.port) for _ in range(2)]
            await until(lambda: len(live.agent.writeback.listener.open) == 2, 5, "two admitted")  # type: ignore[union-attr]
            reader, writer = await asyncio.open_connection("127.0.0.1", live.port)
            assert await asyncio.wait_for(reader.read(), 5) == b"", "over the cap: closed without a byte"
            writer.close()
            for r, _ in idle:  # the header deadline closes the idle ones
                assert await asyncio.wait_for(r.read(), 5) == b""
            status, _, _ = await api(live.port, "GET", "/v1/requests/x")
            refused = live.agent.writeback.metrics.connections_refused  # type: ignore[union-attr]
            counts = {
                s.labels["reason"]: s.value for s in refused.collect()[0].samples if s.name.endswith("_total")
            }
            for _, w in idle:
                w.close()
        assert status == 404, "capacity is back once they are gone"
        assert counts == {"connection_cap": 1.0, "header_timeout": 2.0}

    async def test_slow_body_gets_408(self, tmp_path: Path, graph_sim: SimEnv) -> None:
        """Headers on time, body never completes: 408 within request_timeout_secs."""
        async with live_agent(tmp_path, graph_sim, writeback_table(request_timeout_secs=0.5)) as live:
            reader, writer = await asyncio.open_connection("127.0.0.1", live.port)
            writer.write(
                b"PATCH /v1/sources/sim/alerts/da1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"Authorization: Bearer {TOKEN}\r\nContent-Length: 100\r\n\r\n{{".encode()
            )
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), 5)
            writer.close()
        assert answer.startswith(b"HTTP/1.1 408")

    async def test_tls_and_mutual_tls(self, tmp_path: Path, graph_sim: SimEnv) -> None:
        """With tls: HTTPS only; with client_ca_file: no client certificate, no answer; with one: 202."""
        server = make_tls(tmp_path / "srv")
        client = make_client_cert(tmp_path / "cli", cn="splunk-hf-01")
        tls = {
            "cert_file": str(server.cert),
            "key_file": str(server.key),
            "client_ca_file": str(client.ca_cert),
        }
        alert = graph_sim.sim.add_alerts(1)[0]["id"]
        async with live_agent(tmp_path, graph_sim, writeback_table(tls=tls)) as live:
            no_cert = ssl.create_default_context(cafile=str(server.ca_cert))
            with pytest.raises(aiohttp.ClientError):
                await api(
                    live.port,
                    "PATCH",
                    f"/v1/sources/sim/alerts/{alert}",
                    {"status": "resolved"},
                    scheme="https",
                    ssl_context=no_cert,
                )
            with pytest.raises(aiohttp.ClientError):
                await api(live.port, "PATCH", f"/v1/sources/sim/alerts/{alert}", {"status": "resolved"})
            with_cert = ssl.create_default_context(cafile=str(server.ca_cert))
            with_cert.load_cert_chain(str(client.cert), str(client.key))
            status, doc, _ = await api(
                live.port,
                "PATCH",
                f"/v1/sources/sim/alerts/{alert}",
                {"status": "resolved"},
                scheme="https",
                ssl_context=with_cert,
            )
            assert status == 202
            await live.wait_state(doc["id"], "done", ssl_context=with_cert)
        assert graph_sim.sim.alerts[alert]["status"] == "resolved"


class TestLoopControlInProcess:
    async def test_the_agents_own_version_comes_back_marked(self, tmp_path: Path, graph_sim: SimEnv) -> None:
        """After the write, the next poll forwards the new version with the siemAgent mark; the earlier
        version (forwarded before) stays unmarked."""
        alert = graph_sim.sim.add_alerts(1)[0]["id"]
        async with live_agent(tmp_path, graph_sim) as live:
            await until(lambda: len(delivered(live.out)) == 1, 10, "the first version")
            _, doc, _ = await api(
                live.port, "PATCH", f"/v1/sources/sim/alerts/{alert}", {"status": "resolved"}
            )
            await live.wait_state(doc["id"], "done")
            await until(lambda: len(delivered(live.out)) == 2, 10, "the agent's own version")
        first, own = delivered(live.out)
        assert "siemAgent" not in first and own["status"] == "resolved"
        assert own["siemAgent"] == {
            "origin": "siem-agent-writeback",
            "requestId": doc["id"],
            "requestedBy": "splunk",
        }


class TestGivingUp:
    async def test_a_request_graph_cannot_take_in_time_expires(
        self, tmp_path: Path, graph_sim: SimEnv
    ) -> None:
        """Graph throttles for longer than give_up_after_secs (a 429 holds the tenant's budget): the request
        fails with code expired once its time is up, even while the budget still waits; nothing applied."""
        alert = graph_sim.sim.add_alerts(1)[0]["id"]
        graph_sim.sim.throttle(60)
        async with live_agent(tmp_path, graph_sim, writeback_table(give_up_after_secs=1)) as live:
            _, doc, _ = await api(
                live.port, "PATCH", f"/v1/sources/sim/alerts/{alert}", {"status": "resolved"}
            )
            state = await live.wait_state(doc["id"], "failed")
        # Which request meets the 429 first (the poll, holding the budget the write then waits on,
        # or the write itself) is up to scheduling; either way the message says why it expired.
        error = state["error"]
        assert error["code"] == "expired", error
        assert error["message"].startswith("not delivered within give_up_after_secs"), error
        assert "budget" in error["message"] or "Graph throttled (429)" in error["message"], error
        assert graph_sim.sim.writes.applied == []
