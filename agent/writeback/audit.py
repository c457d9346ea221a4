"""Audit lines of the write-back path: who asked for what, and what came of it.

Every request the API receives and every delivery result is one log line on the logger
``agent.writeback.audit`` with ``audit = true`` and key/value fields: ``who`` (the token's *name*,
``cli`` for the command line, ``-`` when no valid token came), ``client`` (peer address, and the
client certificate's subject CN under mutual TLS), ``request``, ``source``, ``kind``, ``target``,
``changes`` (property=value) and ``comment_chars`` (the comment's length, never its text), then
``result`` (``queued``, ``done``, ``failed``, ``rejected``, ``unauthenticated``) with ``status`` and
``error`` where there is one. The bearer token never appears; the lines follow ``log.format`` and
``log.path`` like every other line.

Audit lines are info lines that ``agent.logs.configure`` lets through whatever ``log.level`` says, and
the repeat filter never folds them. Only refusals without a valid token are warnings, folded like
other repeated warnings, so a client hammering with a wrong token cannot flood the log.
"""

from __future__ import annotations

import logging
from typing import Any

from agent.writeback.queue import WriteRequest
from agent.writeback.updates import Update

log = logging.getLogger("agent.writeback.audit")


def _request_fields(req: WriteRequest) -> dict[str, Any]:
    return {
        "audit": True,
        "who": req.by,
        "request": req.id,
        "source": req.source,
        "kind": req.entity,
        "target": req.target,
        "changes": Update(dict(req.changes)).describe(),
        "comment_chars": len(req.comment) if req.comment is not None else 0,
    }


def queued(req: WriteRequest, client: str) -> None:
    log.info(
        "Write-back request queued.", extra={**_request_fields(req), "client": client, "result": "queued"}
    )


def finished(req: WriteRequest) -> None:
    fields = {**_request_fields(req), "result": req.state}
    if req.error is not None:
        fields["status"] = req.error.get("status", "-")
        fields["error"] = f"{req.error.get('code', '-')}: {req.error.get('message', '')}"[:300]
        fields["graph_request_id"] = req.error.get("requestId", "-")
        log.info("Write-back request failed.", extra=fields)
    else:
        fields["versions"] = ",".join(req.versions)
        log.info("Write-back request done.", extra=fields)


def rejected(who: str, client: str, status: int, reason: str, path: str) -> None:
    level = logging.WARNING if status == 401 else logging.INFO
    result = "unauthenticated" if status == 401 else "rejected"
    log.log(
        level,
        "Write-back request refused.",
        extra={
            "audit": True,
            "who": who,
            "client": client,
            "result": result,
            "status": status,
            "error": reason[:300],
            "path": path[:200],
        },
    )
