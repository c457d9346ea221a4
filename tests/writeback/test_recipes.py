"""The SIEM recipes send the requests their pages document, and the agent accepts and delivers them:
the Splunk alert action run as Splunk runs it, the Sentinel playbook's and Kibana connector's bodies."""

from __future__ import annotations

import asyncio
import csv
import gzip
import io
import re
import sys
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from agent.writeback.updates import CLASSIFICATION, FIELDS
from tests.support.simulator import SimEnv
from tests.support.wait import until
from tests.writeback.helpers import TOKEN, api, live_agent, writeback_table

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "writeback"
SCRIPT = DEPLOY / "splunk" / "siem_agent_writeback" / "bin" / "siem_agent_writeback.py"
SESSION_KEY = "splunk-session-key-1234"


def documented_body(page: str, name: str) -> dict[str, Any]:
    """The JSON request body a docs page shows after ``<!-- request-body: name -->``."""
    text = (ROOT / "docs" / page).read_text()
    match = re.search(rf"<!-- request-body: {name} -->\n```json\n(.*?)\n```", text, re.S)
    assert match is not None, f"{page} has no request-body block {name}"
    doc = orjson.loads(match.group(1))
    assert isinstance(doc, dict)
    return doc


class FakeSplunkd:
    """splunkd's storage/passwords endpoint, as the alert action reads it with the session key."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.asked: list[str] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/servicesNS/nobody/{app}/storage/passwords/{entity}", self._password)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _password(self, request: web.Request) -> web.Response:
        self.asked.append(request.match_info["entity"])
        if request.headers.get("Authorization") != f"Splunk {SESSION_KEY}":
            return web.Response(status=401)
        if request.match_info["entity"] != "siem-agent-writeback:splunk:":
            return web.json_response({"entry": []}, status=404)
        return web.json_response({"entry": [{"content": {"clear_password": self.secret}}]})


def results_file(path: Path, rows: list[dict[str, str]]) -> Path:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=sorted({k for r in rows for k in r}))
    writer.writeheader()
    writer.writerows(rows)
    with gzip.open(path, "wt", encoding="utf-8", newline="") as fh:
        fh.write(buf.getvalue())
    return path


async def run_action(payload: dict[str, Any]) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SCRIPT),
        "--execute",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(orjson.dumps(payload)), 60)
    assert proc.returncode is not None
    return proc.returncode, err.decode()


class TestSplunkAlertAction:
    async def test_every_result_is_sent_once_with_the_stored_token(
        self, tmp_path: Path, graph_sim: SimEnv
    ) -> None:
        """As Splunk runs it: payload on stdin, token from storage/passwords, one PATCH per result row with
        per-row overrides; rows without an id are skipped; a refused row fails the action."""
        sim = graph_sim.sim
        a, b = (x["id"] for x in sim.add_alerts(2))
        splunkd = FakeSplunkd(TOKEN)
        await splunkd.start()
        try:
            async with live_agent(tmp_path, graph_sim, writeback_table()) as live:
                rows = [
                    {
                        "id": a,
                        "siem_agent_classification": "falsePositive",
                        "siem_agent_comment": "Closed in Splunk ES by alice: scanner",
                    },
                    {"id": b, "siem_agent_classification": "", "siem_agent_comment": ""},
                    {"id": "", "siem_agent_classification": "", "siem_agent_comment": ""},
                ]
                payload = {
                    "app": "siem_agent_writeback",
                    "sid": "scheduler__admin__search__RMD5_at_1732960000_17",
                    "server_uri": splunkd.url,
                    "session_key": SESSION_KEY,
                    "results_file": str(results_file(tmp_path / "results.csv.gz", rows)),
                    "result": rows[0],
                    "configuration": {
                        "agent_url": f"http://127.0.0.1:{live.port}",
                        "source": "sim",
                        "kind": "alerts",
                        "id_field": "id",
                        "status": "resolved",
                        "classification": "truePositive",
                        "comment": "Closed in Splunk",
                        "token_name": "splunk",
                    },
                }
                code, err = await run_action(payload)
                assert code == 0, err
                await until(lambda: len(sim.writes.applied) == 4, 10, "both alerts written")
                again, _ = await run_action(payload)  # the same alert action run again: nothing new
                payload["configuration"]["status"] = "closed"
                payload["sid"] = "another-sid"
                refused, refused_err = await run_action(payload)
                await until(
                    lambda: all(r.state == "done" for r in live.agent.writeback.queue), 10, "delivered"
                )  # type: ignore[union-attr]
        finally:
            await splunkd.stop()
        assert (
            sim.alerts[a]["classification"] == "falsePositive"
            and sim.alerts[b]["classification"] == "truePositive"
        )
        assert [c["comment"] for c in sim.alerts[a]["comments"]] == ["Closed in Splunk ES by alice: scanner"]
        assert [c["comment"] for c in sim.alerts[b]["comments"]] == ["Closed in Splunk"]
        assert again == 0 and len(sim.writes.applied) == 4, "Idempotency-Key: a re-run queues nothing new"
        assert refused == 4 and "refused: HTTP 400" in refused_err and "status 'closed'" in refused_err
        assert "has no 'id' field" in err and "queued as request" in err
        leaked = TOKEN in err + refused_err
        assert not leaked, "the token leaked into the command's stderr"
        assert splunkd.asked[0] == "siem-agent-writeback:splunk:"
        first = live.agent.writeback.queue.get(next(iter(live.agent.writeback.queue)).id)  # type: ignore[union-attr]
        assert (
            first is not None and first.key == f"splunk-scheduler__admin__search__RMD5_at_1732960000_17-{a}"
        )

    def test_the_app_declares_the_action(self) -> None:
        """alert_actions.conf names the script's stanza, payload_format json, python3; the spec lists every param."""
        app = DEPLOY / "splunk" / "siem_agent_writeback"
        conf = (app / "default" / "alert_actions.conf").read_text()
        spec = (app / "README" / "alert_actions.conf.spec").read_text()
        assert (
            "[siem_agent_writeback]" in conf and "is_custom = 1" in conf and "payload_format = json" in conf
        )
        params = re.findall(r"^param\.(\w+) =", conf, re.M)
        assert params and all(f"param.{p} = " in spec for p in params)


class TestDocumentedRequests:
    async def test_each_pages_request_is_accepted_and_delivered(
        self, tmp_path: Path, graph_sim: SimEnv
    ) -> None:
        """The bodies writeback-sentinel/-splunk/-elastic.md show, on the routes they name: 202, done."""
        sim = graph_sim.sim
        ids = [x["id"] for x in sim.add_alerts(3)]
        async with live_agent(tmp_path, graph_sim) as live:
            accepted = []
            for i, page in enumerate(("sentinel", "splunk", "elastic")):
                body = documented_body(f"writeback-{page}.md", page)
                if page == "elastic":
                    status, doc, _ = await api(
                        live.port, "POST", "/v1/sources/sim/alerts", {**body, "id": ids[i]}
                    )
                else:
                    status, doc, _ = await api(live.port, "PATCH", f"/v1/sources/sim/alerts/{ids[i]}", body)
                assert status == 202, doc
                accepted.append(doc["id"])
            for rid in accepted:
                await live.wait_state(rid, "done")
        assert [sim.alerts[i]["status"] for i in ids] == ["resolved"] * 3
        assert sim.alerts[ids[0]]["classification"] == "falsePositive"


class TestSentinelPlaybook:
    def test_the_template_patches_each_alert_with_valid_values(self) -> None:
        """The HTTP action: PATCH on the item route, bearer from a SecureString parameter, inputs hidden,
        body keys the agent accepts, classification map onto Graph's enum, and the documented body's keys."""
        tpl = orjson.loads((DEPLOY / "sentinel" / "azuredeploy.json").read_bytes())
        assert tpl["parameters"]["AgentToken"]["type"] == "securestring"
        workflow = next(r for r in tpl["resources"] if r["type"] == "Microsoft.Logic/workflows")
        definition = workflow["properties"]["definition"]
        assert definition["parameters"]["agentToken"]["type"] == "SecureString"
        assert set(definition["parameters"]["classificationMap"]["defaultValue"].values()) <= set(
            CLASSIFICATION
        )
        closed = definition["actions"]["Incident_is_closed"]
        loop = closed["actions"]["For_each_alert"]
        http = loop["actions"]["Forwarded_by_siem_agent"]["actions"]["PATCH_the_Defender_alert"]
        inputs = http["inputs"]
        assert inputs["method"] == "PATCH"
        assert re.fullmatch(r"@\{parameters\('agentUrl'\)\}/v1/sources/@\{.*\}/alerts/@\{.*\}", inputs["uri"])
        assert inputs["headers"]["Authorization"] == "Bearer @{parameters('agentToken')}"
        assert http["runtimeConfiguration"]["secureData"]["properties"] == ["inputs"]
        assert set(inputs["body"]) <= set(FIELDS["alert"]) | {"comment"}
        assert set(inputs["body"]) == set(documented_body("writeback-sentinel.md", "sentinel"))
        assert loop["actions"]["Forwarded_by_siem_agent"]["runAfter"] == {"Graph_alert_id": ["Succeeded"]}
        trigger = definition["triggers"]["Microsoft_Sentinel_incident"]
        assert trigger["type"] == "ApiConnectionWebhook" and trigger["inputs"]["path"] == "/incident-creation"


def mustache(template: str, ctx: dict[str, Any]) -> str:
    """The Mustache subset the recipe uses: sections over lists, {{.}}, dotted names (JSON-escaped,
    as Kibana escapes values in webhook bodies)."""

    def lookup(stack: list[Any], name: str) -> Any:
        if name == ".":
            return stack[-1]
        for scope in reversed(stack):
            value: Any = scope
            for part in name.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            if value is not None:
                return value
        return None

    def render(tpl: str, stack: list[Any]) -> str:
        out = ""
        pos = 0
        for m in re.finditer(r"\{\{#([\w.]+)\}\}(.*?)\{\{/\1\}\}|\{\{([\w.]+|\.)\}\}", tpl, re.S):
            out += tpl[pos : m.start()]
            pos = m.end()
            if m.group(1):
                items = lookup(stack, m.group(1)) or []
                out += "".join(render(m.group(2), [*stack, item]) for item in items)
            else:
                out += orjson.dumps(str(lookup(stack, m.group(3)))).decode()[1:-1]
        return out + tpl[pos:]

    return render(template, [ctx])


class TestKibanaRecipe:
    def test_rule_and_connector_render_the_documented_request(self) -> None:
        """The rule's body template, rendered for a closed alert's hit, is exactly the page's request; the
        connector posts to the collection route; the query defines the runtime field the template reads."""
        connector = orjson.loads((DEPLOY / "elastic" / "connector.json").read_bytes())
        rule = orjson.loads((DEPLOY / "elastic" / "rule.json").read_bytes())
        assert connector["connector_type_id"] == ".webhook" and connector["config"]["method"] == "post"
        assert connector["config"]["url"].endswith("/v1/sources/contoso/alerts")
        assert connector["config"]["headers"]["Authorization"].startswith("Bearer ")
        query = orjson.loads(rule["params"]["esQuery"])
        assert "graph_alert_id" in query["runtime_mappings"] and query["fields"] == ["graph_alert_id"]
        assert rule["params"]["termField"] == "kibana.alert.original_event.id" and rule["params"]["size"] == 1
        action = rule["actions"][0]
        assert (
            action["group"] == "query matched" and action["frequency"]["notify_when"] == "onActionGroupChange"
        )
        hit = {"_id": "x", "_source": {}, "fields": {"graph_alert_id": ["da637551227677560813_-961444813"]}}
        rendered = mustache(
            action["params"]["body"], {"context": {"hits": [hit]}, "rule": {"name": rule["name"]}}
        )
        assert orjson.loads(rendered) == documented_body("writeback-elastic.md", "elastic")
