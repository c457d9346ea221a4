"""Loop control: the alert versions the agent's own writes produced, marked or held back.

The agent's write shows up as an alert (or incident) update on the next poll. Between the source and
the pipeline, every batch is checked against ``OwnVersions`` (stream ``<source>/alerts_v2/…`` is
entity ``alert``, ``<source>/incidents/all`` is ``incident``):

* ``forward_own_updates = true`` (default): the version is forwarded with one more top-level key,
  ``"siemAgent": {"origin": "siem-agent-writeback", "requestId": "…", "requestedBy": "<token name>"}``
  (``requestedBy`` is ``cli`` for ``siem-agent alerts update``); the codecs show it (docs/writeback.md);
* ``false``: the version is left out of the batch. Its dedup key and the batch's cursor still reach
  the checkpoint (a batch left empty goes as the cursor-only commit), so nothing is read again.

Only exact versions are matched: a later change by someone else is a new ``lastUpdateDateTime`` and
is forwarded unmarked.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from agent.model import Alert, Batch
from agent.sources.base import SourceContext
from agent.writeback.versions import OwnVersions, OwnWrite

ORIGIN = "siem-agent-writeback"
MARK_KEY = "siemAgent"


def stream_entity(stream: str) -> tuple[str, str] | None:
    """``(source, entity)`` of a stream id, or ``None`` for a stream that is neither."""
    parts = stream.split("/")
    if len(parts) < 2:
        return None
    entity = {"alerts_v2": "alert", "incidents": "incident"}.get(parts[1])
    return (parts[0], entity) if entity else None


def marked(alert: Alert, write: OwnWrite) -> dict[str, Any]:
    """A copy of ``alert`` carrying the agent-originated mark."""
    mark = {"origin": ORIGIN, "requestId": write.request_id, "requestedBy": write.by}
    return {**alert, MARK_KEY: mark}


class LoopControl:
    """Wraps a ``SourceContext`` so every emitted batch passes ``filter`` first."""

    def __init__(self, versions: OwnVersions, forward: bool) -> None:
        self.versions = versions
        self.forward = forward
        #: Called with ``marked`` or ``skipped`` for each own version seen (metrics).
        self.on_own: Callable[[str], None] = lambda action: None

    def wrap(self, ctx: SourceContext) -> SourceContext:
        """The same context whose ``emit`` filters each batch."""
        emit, advance = ctx.emit, ctx.advance

        async def filtered_emit(batch: Batch) -> None:
            out = self.filter(batch)
            if out.alerts:
                await emit(out)
            else:
                await advance(out.stream, out.commit)

        return dataclasses.replace(ctx, emit=filtered_emit)

    def filter(self, batch: Batch) -> Batch:
        """``batch`` with own versions marked or removed (the same object when none is in it)."""
        where = stream_entity(batch.stream)
        if where is None:
            return batch
        self.versions.refresh()
        source, entity = where
        if not self.versions.knows(source, entity):
            return batch  # the common case: one stat per batch, nothing per alert
        out: list[Alert] = []
        changed = False
        for alert in batch.alerts:
            target, version = alert.get("id"), alert.get("lastUpdateDateTime")
            write = (
                self.versions.lookup(source, entity, target, version)
                if isinstance(target, str) and isinstance(version, str)
                else None
            )
            if write is None:
                out.append(alert)
                continue
            changed = True
            if self.forward:
                out.append(marked(alert, write))
            self.on_own("marked" if self.forward else "skipped")
        if not changed:
            return batch
        return Batch(batch.stream, out, batch.commit, batch.seq)
