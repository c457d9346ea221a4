#!/usr/bin/env python3
"""Splunk custom alert action: send a triage result to Microsoft Defender through siem-agent.

Splunk runs ``siem_agent_writeback.py --execute`` with the alert action payload (JSON) on stdin:
``configuration`` (the action's parameters, ``$result.field$`` tokens already substituted), ``result``
(the first result), ``results_file`` (every result, gzip'd CSV), ``sid``, ``server_uri`` and
``session_key``. For each result row the script sends one request to the siem-agent write-back API::

    PATCH <agent_url>/v1/sources/<source>/<kind>/<row[id_field]>
    Authorization: Bearer <token>
    Idempotency-Key: splunk-<sid>-<id>
    Content-Type: application/json

    {"status": …, "classification": …, "determination": …, "assignedTo": …, "comment": …}

with the parameters that are set; a row field ``siem_agent_<name>`` (``siem_agent_status``,
``siem_agent_classification``, ``siem_agent_determination``, ``siem_agent_assigned_to``,
``siem_agent_comment``) overrides the parameter for that row. The token is read from Splunk's
credential store (``storage/passwords``, realm ``siem-agent-writeback``, user ``token_name``) with the
alert's session key, so it never sits in savedsearches.conf. The agent answers 202 once the request
is durably queued; anything else is written to stderr (splunkd.log, component ``sendmodalert``) with
the agent's error and the script exits non-zero. Standard library only (Splunk's Python 3.7+).
"""

import csv
import gzip
import json
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request

REALM = "siem-agent-writeback"
FIELDS = (
    ("status", "status"),
    ("classification", "classification"),
    ("determination", "determination"),
    ("assigned_to", "assignedTo"),
    ("comment", "comment"),
)
TIMEOUT_SECS = 30


def log(level, message):
    sys.stderr.write("%s siem_agent_writeback: %s\n" % (level, message))
    sys.stderr.flush()


def splunkd_context(server_uri):
    """splunkd's management port on this host uses its own certificate (by default self-signed)."""
    if server_uri.startswith("https://127.0.0.1") or server_uri.startswith("https://localhost"):
        return ssl._create_unverified_context()  # noqa: S323 - local splunkd only
    return ssl.create_default_context()


def read_token(payload, token_name):
    """The write-back token from Splunk's credential store, with the alert's session key."""
    server_uri = payload["server_uri"].rstrip("/")
    app = payload.get("app") or "siem_agent_writeback"
    entity = urllib.parse.quote("%s:%s:" % (REALM, token_name), safe="")
    url = "%s/servicesNS/nobody/%s/storage/passwords/%s?output_mode=json" % (server_uri, urllib.parse.quote(app), entity)
    request = urllib.request.Request(url, headers={"Authorization": "Splunk %s" % payload["session_key"]})
    context = splunkd_context(server_uri) if server_uri.startswith("https") else None
    with urllib.request.urlopen(request, timeout=TIMEOUT_SECS, context=context) as response:  # noqa: S310
        doc = json.loads(response.read().decode("utf-8"))
    return doc["entry"][0]["content"]["clear_password"]


def rows(payload):
    """Every result row (the results file), or the first result when there is no file."""
    path = payload.get("results_file")
    if path:
        try:
            with gzip.open(path, "rt", encoding="utf-8", newline="") as fh:
                return [dict(r) for r in csv.DictReader(fh)]
        except OSError as exc:
            log("WARN", "cannot read results_file (%s); using the first result only" % exc)
    return [payload.get("result") or {}]


def body_for(row, cfg):
    body = {}
    for param, key in FIELDS:
        value = row.get("siem_agent_" + param) or cfg.get(param) or ""
        if value:
            body[key] = value
    return body


def send(cfg, token, row, sid):
    kind = cfg.get("kind") or "alerts"
    target = row.get(cfg.get("id_field") or "id") or ""
    if not target:
        log("WARN", "result has no %r field; skipped" % (cfg.get("id_field") or "id"))
        return True
    body = body_for(row, cfg)
    if not body:
        log("WARN", "nothing to send for %s %s (no status, classification, determination, assignee or comment)" % (kind, target))
        return True
    url = "%s/v1/sources/%s/%s/%s" % (
        cfg["agent_url"].rstrip("/"),
        urllib.parse.quote(cfg["source"], safe=""),
        urllib.parse.quote(kind, safe=""),
        urllib.parse.quote(target, safe=""),
    )
    headers = {
        "Authorization": "Bearer %s" % token,
        "Content-Type": "application/json",
        "Idempotency-Key": ("splunk-%s-%s" % (sid, target))[:200],
    }
    request = urllib.request.Request(url, data=json.dumps(body).encode("utf-8"), headers=headers, method="PATCH")
    context = ssl.create_default_context(cafile=cfg.get("ca_file") or None) if url.startswith("https") else None
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECS, context=context) as response:  # noqa: S310
            answer = json.loads(response.read().decode("utf-8"))
            log("INFO", "%s %s queued as request %s" % (kind, target, answer.get("id")))
            return True
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace")[:500]
        log("ERROR", "%s %s refused: HTTP %s %s" % (kind, target, exc.code, detail))
    except (urllib.error.URLError, OSError) as exc:
        log("ERROR", "%s %s not sent: %s" % (kind, target, exc))
    return False


def main(argv, stdin):
    if len(argv) < 2 or argv[1] != "--execute":
        log("FATAL", "run by Splunk with --execute")
        return 2
    payload = json.loads(stdin.read())
    cfg = payload.get("configuration") or {}
    for required in ("agent_url", "source", "token_name"):
        if not cfg.get(required):
            log("FATAL", "parameter %s is not set" % required)
            return 2
    try:
        token = read_token(payload, cfg["token_name"])
    except (urllib.error.URLError, OSError, KeyError, IndexError, ValueError) as exc:
        log("FATAL", "cannot read token %r from storage/passwords (realm %s): %s" % (cfg["token_name"], REALM, exc))
        return 3
    ok = [send(cfg, token, row, payload.get("sid") or "adhoc") for row in rows(payload)]
    return 0 if all(ok) else 4


if __name__ == "__main__":
    sys.exit(main(sys.argv, sys.stdin))
