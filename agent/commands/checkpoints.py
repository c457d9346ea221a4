"""``siem-agent checkpoint show`` and ``checkpoint reset [--stream S]``.

``show`` reads the checkpoint — snapshot and journal — and never writes it; it prints, per stream, the
cursor, how many alert versions it remembers for dedup, and the lag (now minus the cursor). ``reset``
takes the state lock first, so it refuses while an agent with the same ``state_dir`` and ``name``
runs: without ``--stream`` it moves the snapshot and its journal aside (``<file>.reset-<time>``);
with ``--stream`` it removes that stream and rewrites the snapshot atomically, folding the journal in
(the stream starts again from ``initial_lookback_secs``; its alerts may be forwarded again).

Both need only ``state_dir`` and ``name`` (``agent.config.load_state_settings``): secrets are not
resolved, so they work from an admin shell without the service's credentials.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.checkpoint import CheckpointStore
from agent.clock import Clock, now_str
from agent.errors import StateError
from agent.statelock import StateLock
from agent.timestamps import parse


def _store(state_dir: Path, name: str, clock: Clock) -> CheckpointStore:
    return CheckpointStore(state_dir, name, lambda: now_str(clock))


def show(state_dir: Path, name: str, clock: Clock) -> dict[str, Any]:
    """The checkpoint as a report: ``{"path", "exists", "streams": {stream: {cursor, seen, lag_secs}}}``.

    Raises ``StateError`` for an unreadable or corrupt file.
    """
    store = _store(state_dir, name, clock)
    streams = store.load()
    now = clock.now()
    report: dict[str, Any] = {"path": str(store.path), "exists": store.exists(), "streams": {}}
    for stream, st in sorted(streams.items()):
        lag = round((now - parse(st.cursor)).total_seconds(), 3) if st.cursor else None
        report["streams"][stream] = {"cursor": st.cursor, "seen": len(st.seen), "lag_secs": lag}
    return report


def render(report: dict[str, Any]) -> str:
    """``show``'s report as text, one line per stream."""
    if not report["exists"]:
        return f"{report['path']}: no checkpoint yet (the first run starts from initial_lookback_secs)\n"
    lines = [f"{report['path']}:"]
    if not report["streams"]:
        lines.append("  (no streams)")
    for stream, st in report["streams"].items():
        lag = "-" if st["lag_secs"] is None else f"{st['lag_secs']:.0f}s"
        lines.append(f"  {stream}: cursor {st['cursor'] or '-'}, {st['seen']} seen, lag {lag}")
    return "\n".join(lines) + "\n"


def reset(state_dir: Path, name: str, clock: Clock, stream: str | None) -> str:
    """Reset the whole checkpoint or one stream; return what was done. Raises ``StateError``."""
    with StateLock(state_dir, name):
        store = _store(state_dir, name, clock)
        if stream is None:
            moved = store.reset()
            if not moved:
                return f"{store.path}: no checkpoint to reset"
            return "checkpoint moved aside to " + ", ".join(str(p) for p in moved)
        streams = store.load()
        if stream not in streams:
            known = ", ".join(sorted(streams)) or "none"
            raise StateError(f"{store.path} has no stream {stream!r} (streams: {known})")
        del streams[stream]
        store.rewrite()
        return f"stream {stream} removed from {store.path}"
