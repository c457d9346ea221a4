"""Ordered acknowledgement: a stream's checkpoint advances only past batches every sink delivered.

Each batch is registered once with the number of sinks that must acknowledge it. When a batch's
count reaches zero *and* every earlier batch of its stream has, its ``Commit`` is handed to
``on_commit`` — strictly in source order, so the checkpoint never has a gap behind it. A cursor-only
commit (``advance``: progress without alerts, e.g. a cursor moved past a fully read window) waits for
no sink, only for everything registered on its stream before it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from agent.model import Batch, Commit


@dataclass(slots=True)
class _Pending:
    remaining: int
    commit: Commit


class AckTracker:
    """Tracks outstanding batches per stream and commits them in order."""

    def __init__(self, on_commit: Callable[[str, Commit], None]) -> None:
        self._on_commit = on_commit
        self._streams: dict[str, OrderedDict[int, _Pending]] = {}
        self._next_seq: dict[str, int] = {}

    def register(self, batch: Batch, sinks: int) -> None:
        """Assign ``batch.seq`` and expect ``sinks`` acknowledgements (0: commit as soon as in order)."""
        batch.seq = self._add(batch.stream, sinks, batch.commit)

    def advance(self, stream: str, commit: Commit) -> None:
        """The cursor-only commit: hand ``commit`` on once everything registered before it is."""
        self._add(stream, 0, commit)

    def _add(self, stream: str, sinks: int, commit: Commit) -> int:
        seq = self._next_seq.get(stream, 0)
        self._next_seq[stream] = seq + 1
        self._streams.setdefault(stream, OrderedDict())[seq] = _Pending(sinks, commit)
        self._flush(stream)
        return seq

    def ack(self, batch: Batch) -> None:
        """One sink is done with ``batch`` (delivered, dead-lettered or deliberately dropped)."""
        pending = self._streams[batch.stream].get(batch.seq)
        if pending is None or pending.remaining <= 0:
            raise RuntimeError(f"batch {batch.stream}#{batch.seq} acknowledged more often than registered")
        pending.remaining -= 1
        self._flush(batch.stream)

    def _flush(self, stream: str) -> None:
        queue = self._streams[stream]
        while queue:
            seq, pending = next(iter(queue.items()))
            if pending.remaining > 0:
                return
            del queue[seq]
            self._on_commit(stream, pending.commit)

    def outstanding(self) -> int:
        """Batches registered but not yet committed, over all streams."""
        return sum(len(q) for q in self._streams.values())
