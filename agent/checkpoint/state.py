"""Acknowledged progress in memory: one ``StreamState`` per stream, and how a ``Commit`` changes it.

The same function applies a commit when it is acknowledged and when a journal record is replayed at
startup, so recovery rebuilds exactly the state the running agent had.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.model import Commit
from agent.timestamps import sort_key


@dataclass(slots=True)
class StreamState:
    """Acknowledged progress of one stream."""

    cursor: str | None = None
    seen: dict[str, str] = field(default_factory=dict)
    #: No time in ``seen`` orders before this ``sort_key`` (a lower bound; ``None``: unknown), so a
    #: prune that would forget nothing skips the scan of ``seen``.
    floor: str | None = field(default=None, compare=False, repr=False)


def apply_commit(streams: dict[str, StreamState], stream: str, commit: Commit) -> None:
    """Record ``commit`` in ``streams``: remember its keys, move the cursor forward, prune old keys."""
    state = streams.setdefault(stream, StreamState())
    state.seen.update(commit.seen)
    if state.floor is not None and commit.seen:
        state.floor = min(state.floor, *map(sort_key, commit.seen.values()))
    if commit.cursor is not None:
        if state.cursor is None or sort_key(commit.cursor) > sort_key(state.cursor):
            state.cursor = commit.cursor
        if commit.prune_before is not None:
            horizon = sort_key(commit.prune_before)
            if state.floor is None or state.floor < horizon:
                state.seen = {k: v for k, v in state.seen.items() if sort_key(v) >= horizon}
                state.floor = min(map(sort_key, state.seen.values()), default=None)


def is_timestamp(value: object) -> bool:
    """Whether ``value`` is a Graph timestamp string (as a cursor or a remembered key's time)."""
    if not isinstance(value, str):
        return False
    try:
        sort_key(value)
    except ValueError:
        return False
    return True
