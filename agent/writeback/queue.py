"""The durable write-back queue: every request and each step of its delivery, in the journal.

A request moves ``queued`` → ``done`` or ``failed``. Its steps (``comment``, then ``update``) move
``pending`` → ``sending`` → ``sent``; ``sending`` is journaled *before* the call to Graph, so after a
crash a step found ``sending`` may or may not have been applied and is checked against Graph before
it is sent again (``agent.writeback.executor``). Records::

    {"t": "req",  "id", "at", "source", "entity", "target", "changes", "comment", "by", "key"}
    {"t": "step", "id", "step", "state": "sending" | "sent", "at", "version"?}
    {"t": "end",  "id", "at", "state": "done" | "failed", "error"?}
    {"t": "snap", …every field of one request…}          (written by compaction)

Bounded: at most ``max_queued`` unfinished requests (``submit`` raises ``QueueFull``), and finished
ones are kept ``retention_secs`` but never more than ten times ``max_queued`` (oldest forgotten
first). The journal is compacted at startup and whenever the records appended since the last
compaction exceed four per request it then held, plus 1000 (so it stays proportional to what is
remembered, and expired requests are forgotten as it runs, not only at startup).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from agent.clock import Clock
from agent.sources.graph.writes import Entity
from agent.timestamps import format_dt, parse, sort_key
from agent.writeback.journal import Journal
from agent.writeback.updates import Update

STEPS = ("comment", "update")
FINISHED_PER_QUEUED = 10


class QueueFull(Exception):
    """``max_queued`` requests are already waiting."""


@dataclass(slots=True)
class WriteRequest:
    """One write-back request and how far its delivery got."""

    id: str
    source: str
    entity: Entity
    target: str
    changes: dict[str, Any]
    comment: str | None
    by: str
    created: str
    key: str | None = None
    state: str = "queued"  # queued | done | failed
    steps: dict[str, str] = field(default_factory=dict)  # step -> pending | sending | sent
    #: ``lastUpdateDateTime`` values Graph reported after this request's steps (loop control).
    versions: list[str] = field(default_factory=list)
    updated: str = ""
    error: dict[str, Any] | None = None
    #: Delivery attempts in this process, and the last transient failure (not journaled).
    attempts: int = 0
    last_error: str | None = None

    @classmethod
    def new(
        cls,
        source: str,
        entity: Entity,
        target: str,
        update: Update,
        by: str,
        now: str,
        key: str | None = None,
    ) -> WriteRequest:
        """A fresh request (a new id, every step pending) for ``update`` of ``target``."""
        return cls(
            id=str(uuid.uuid4()),
            source=source,
            entity=entity,
            target=target,
            changes=dict(update.changes),
            comment=update.comment,
            by=by,
            created=now,
            key=key,
            steps=_initial_steps(update.changes, update.comment),
            updated=now,
        )

    @property
    def update(self) -> Update:
        return Update(dict(self.changes), self.comment)

    def open_steps(self) -> list[str]:
        """Steps not sent yet, in delivery order."""
        return [s for s in STEPS if self.steps.get(s) in ("pending", "sending")]

    def to_record(self) -> dict[str, Any]:
        return {
            "t": "snap",
            "id": self.id,
            "source": self.source,
            "entity": self.entity,
            "target": self.target,
            "changes": self.changes,
            "comment": self.comment,
            "by": self.by,
            "at": self.created,
            "key": self.key,
            "state": self.state,
            "steps": self.steps,
            "versions": self.versions,
            "updated": self.updated,
            "error": self.error,
        }

    def to_json(self) -> dict[str, Any]:
        """The API's view (``GET /v1/requests/{id}``): no comment text, no token."""
        doc: dict[str, Any] = {
            "id": self.id,
            "state": self.state,
            "source": self.source,
            "kind": self.entity,
            "target": self.target,
            "changes": self.changes,
            "comment": self.comment is not None,
            "submittedBy": self.by,
            "createdDateTime": self.created,
            "lastUpdateDateTime": self.updated,
            "steps": self.steps,
        }
        if self.versions:
            doc["graphVersions"] = self.versions
        if self.state == "queued":
            doc["attempts"] = self.attempts
            if self.last_error:
                doc["lastError"] = self.last_error
        if self.error is not None:
            doc["error"] = self.error
        return doc


class RequestQueue:
    """Requests by id (journal-backed), the unfinished ones per source in arrival order."""

    def __init__(self, journal: Journal, clock: Clock, max_queued: int, retention_secs: float) -> None:
        self.journal = journal
        self._clock = clock
        self.max_queued = max_queued
        self.retention_secs = retention_secs
        self._requests: dict[str, WriteRequest] = {}
        self._keys: dict[tuple[str, str], str] = {}
        #: Requests remembered right after the last compaction (what the journal then held).
        self._compacted_size = 0

    # -- startup -------------------------------------------------------------------------------

    def load(self) -> None:
        """Rebuild every request from the journal, forget expired ones, compact. Raises ``StateError``."""
        for rec in self.journal.load():
            self._replay(rec)
        self._forget_old()
        self.compact()

    def _replay(self, rec: dict[str, Any]) -> None:
        kind, rid = rec.get("t"), rec.get("id")
        if not isinstance(rid, str):
            return
        if kind in ("req", "snap"):
            req = WriteRequest(
                id=rid,
                source=str(rec["source"]),
                entity="incident" if rec.get("entity") == "incident" else "alert",
                target=str(rec["target"]),
                changes=dict(rec.get("changes") or {}),
                comment=rec.get("comment"),
                by=str(rec.get("by", "")),
                created=str(rec.get("at", "")),
                key=rec.get("key"),
            )
            req.steps = dict(rec.get("steps") or _initial_steps(req.changes, req.comment))
            req.state = str(rec.get("state", "queued"))
            req.versions = list(rec.get("versions") or [])
            req.updated = str(rec.get("updated") or req.created)
            req.error = rec.get("error")
            self._add(req)
            return
        known = self._requests.get(rid)
        if known is None:
            return
        if kind == "step":
            known.steps[str(rec.get("step"))] = str(rec.get("state"))
            if isinstance(rec.get("version"), str):
                known.versions.append(rec["version"])
        elif kind == "end":
            known.state = str(rec.get("state"))
            known.error = rec.get("error")
        known.updated = str(rec.get("at") or known.updated)

    def _add(self, req: WriteRequest) -> None:
        self._requests[req.id] = req
        if req.key is not None:
            self._keys[(req.by, req.key)] = req.id

    # -- queries -------------------------------------------------------------------------------

    def get(self, request_id: str) -> WriteRequest | None:
        return self._requests.get(request_id)

    def by_key(self, by: str, key: str) -> WriteRequest | None:
        """The request ``by`` submitted with this ``Idempotency-Key``, if still remembered."""
        rid = self._keys.get((by, key))
        return self._requests.get(rid) if rid is not None else None

    def unfinished(self, source: str | None = None) -> list[WriteRequest]:
        """Queued requests (of ``source``), oldest first."""
        return [r for r in self._requests.values() if r.state == "queued" and source in (None, r.source)]

    def __iter__(self) -> Iterator[WriteRequest]:
        return iter(list(self._requests.values()))

    def __len__(self) -> int:
        return len(self._requests)

    # -- changes (each journaled before it takes effect) ---------------------------------------

    def _now(self) -> str:
        return format_dt(self._clock.now())

    def submit(
        self, source: str, entity: Entity, target: str, update: Update, by: str, key: str | None = None
    ) -> WriteRequest:
        """Queue a request durably and return it. Raises ``QueueFull`` or ``StateError``."""
        if len(self.unfinished()) >= self.max_queued:
            raise QueueFull
        now = self._now()
        req = WriteRequest.new(source, entity, target, update, by, now, key)
        self.journal.append(
            {
                "t": "req",
                "id": req.id,
                "at": now,
                "source": source,
                "entity": entity,
                "target": target,
                "changes": req.changes,
                "comment": req.comment,
                "by": by,
                "key": key,
            }
        )
        self._add(req)
        return req

    def step(self, req: WriteRequest, step: str, state: str, version: str | None = None) -> None:
        """Record that ``step`` is now ``sending`` or ``sent`` (with the version Graph reported)."""
        now = self._now()
        record: dict[str, Any] = {"t": "step", "id": req.id, "step": step, "state": state, "at": now}
        if version is not None:
            record["version"] = version
        self.journal.append(record)
        req.steps[step] = state
        if version is not None:
            req.versions.append(version)
        req.updated = now

    def finish(self, req: WriteRequest, error: dict[str, Any] | None = None) -> None:
        """Record the end: ``done`` without ``error``, ``failed`` with it; compact when due."""
        now = self._now()
        state = "done" if error is None else "failed"
        record: dict[str, Any] = {"t": "end", "id": req.id, "state": state, "at": now}
        if error is not None:
            record["error"] = error
        self.journal.append(record)
        req.state, req.error, req.updated = state, error, now
        if self.journal.appended > 4 * self._compacted_size + 1000:
            self._forget_old()
            self.compact()

    def compact(self) -> None:
        """Rewrite the journal as one snapshot record per remembered request."""
        self.journal.compact(r.to_record() for r in self._requests.values())
        self._compacted_size = len(self._requests)

    def _forget_old(self) -> None:
        horizon = sort_key(format_dt(self._clock.now() - timedelta(seconds=self.retention_secs)))
        finished = [r for r in self._requests.values() if r.state != "queued"]
        finished.sort(key=lambda r: _key(r.updated))
        excess = len(finished) - FINISHED_PER_QUEUED * self.max_queued
        for i, req in enumerate(finished):
            if i < excess or _key(req.updated) < horizon:
                del self._requests[req.id]
                if req.key is not None:
                    self._keys.pop((req.by, req.key), None)


def _initial_steps(changes: dict[str, Any], comment: str | None) -> dict[str, str]:
    steps = {}
    if comment is not None:
        steps["comment"] = "pending"
    if changes:
        steps["update"] = "pending"
    return steps


def _key(ts: str) -> str:
    try:
        return sort_key(ts)
    except ValueError:
        return ""


def parse_time(ts: str) -> float:
    """Seconds since the epoch of a journal timestamp (0 when unreadable)."""
    try:
        return parse(ts).timestamp()
    except ValueError:
        return 0.0
