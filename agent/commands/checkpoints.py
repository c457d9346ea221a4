"""``siem-agent checkpoint show`` and ``checkpoint reset [--stream S]``.

Checkpoints are per source (``<state_dir>/sources/<source>/``, ``agent.checkpoint.sources``). ``show``
reads every source's checkpoint — snapshot and journal — and never writes; it prints, per source, the
shard that owns it under the configuration's ``[shard] count`` (or that it is no longer configured),
then per stream the cursor, how many alert versions it remembers for dedup, and the lag (now minus
the cursor). A single checkpoint file of an earlier version not split yet is shown too.

``reset`` takes each affected source's lock first, so it refuses while any replica polls that source:
without ``--stream`` it moves every checkpoint (the per-source ones and an unsplit old one) aside
(``<file>.reset-<time>``); with ``--stream`` it removes that stream from its source's checkpoint and
rewrites it atomically, folding the journal in (the stream starts again from
``initial_lookback_secs``; its alerts may be forwarded again).

Both need only ``state_dir``, ``name``, ``[shard]`` and the sources' names, tenants and apps
(``agent.config.load_state_settings``): secrets are not resolved, so they work from an admin shell
without the service's credentials.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from agent.checkpoint import CheckpointStore
from agent.checkpoint.files import file_stamp
from agent.checkpoint.sources import source_dir, source_of, source_store, stored_sources
from agent.checkpoint.state import StreamState
from agent.clock import Clock, now_str
from agent.errors import StateError
from agent.sourcelock import FileLock
from agent.timestamps import parse


def _legacy(state_dir: Path, name: str, clock: Clock) -> CheckpointStore:
    return CheckpointStore(state_dir, name, lambda: now_str(clock))


def _streams(streams: Mapping[str, StreamState], clock: Clock) -> dict[str, Any]:
    now = clock.now()
    out = {}
    for stream, st in sorted(streams.items()):
        lag = round((now - parse(st.cursor)).total_seconds(), 3) if st.cursor else None
        out[stream] = {"cursor": st.cursor, "seen": len(st.seen), "lag_secs": lag}
    return out


def show(
    state_dir: Path, name: str, clock: Clock, owners: Mapping[str, int] | None = None, count: int = 1
) -> dict[str, Any]:
    """The checkpoints as a report (``owners``: configured source -> shard index).

    ``{"path", "exists", "shard_count", "sources": {source: {"path", "shard", "streams": {stream:
    {cursor, seen, lag_secs}}}}, "legacy": {"path", "streams"} | None}``. Raises ``StateError``.
    """
    owners = owners or {}
    report: dict[str, Any] = {
        "path": str(state_dir / "sources"),
        "shard_count": count,
        "sources": {},
        "legacy": None,
    }
    legacy = _legacy(state_dir, name, clock)
    if legacy.exists():
        report["legacy"] = {"path": str(legacy.path), "streams": _streams(legacy.load(), clock)}
    for source in sorted(set(stored_sources(state_dir)) | set(owners)):
        store = source_store(state_dir, source, name, lambda: now_str(clock))
        streams = store.load() if store.exists() else {}
        report["sources"][source] = {
            "path": str(store.path),
            "shard": owners.get(source),
            "exists": store.exists(),
            "streams": _streams(streams, clock),
        }
    report["exists"] = report["legacy"] is not None or any(s["exists"] for s in report["sources"].values())
    return report


def render(report: dict[str, Any]) -> str:
    """``show``'s report as text: one line per source, one per stream."""
    lines = []

    def stream_lines(streams: dict[str, Any]) -> None:
        for stream, st in streams.items():
            lag = "-" if st["lag_secs"] is None else f"{st['lag_secs']:.0f}s"
            lines.append(f"    {stream}: cursor {st['cursor'] or '-'}, {st['seen']} seen, lag {lag}")

    if report["legacy"] is not None:
        lines.append(
            f"{report['legacy']['path']}: single checkpoint of an earlier version (split on the next start)"
        )
        stream_lines(report["legacy"]["streams"])
    lines.append(f"{report['path']} (shard count {report['shard_count']}):")
    if not report["sources"]:
        lines.append("  (no sources)")
    for source, src in report["sources"].items():
        owner = "not configured" if src["shard"] is None else f"shard {src['shard']}"
        if not src["exists"]:
            lines.append(
                f"  {source} [{owner}]: no checkpoint yet (the first run starts from initial_lookback_secs)"
            )
            continue
        lines.append(f"  {source} [{owner}]:")
        stream_lines(src["streams"])
        if not src["streams"]:
            lines.append("    (no streams)")
    return "\n".join(lines) + "\n"


def _locked(state_dir: Path, source: str) -> FileLock:
    lock = FileLock(source_dir(state_dir, source) / "lock")
    if not lock.try_acquire():
        raise StateError(
            f"{lock.path} is locked: a replica polling source {source!r} is running ({lock.holder()})"
        )
    return lock


def reset(
    state_dir: Path, name: str, clock: Clock, stream: str | None, only: Collection[str] | None = None
) -> str:
    """Reset every checkpoint (``only``: of these sources, plus an unsplit old one) or one stream;
    return what was done. Raises ``StateError``."""

    def now() -> str:
        return now_str(clock)

    if stream is not None:
        source = source_of(stream)
        lock = _locked(state_dir, source)
        try:
            store = source_store(state_dir, source, name, now)
            streams = store.load()
            if stream not in streams:
                known = ", ".join(sorted(streams)) or "none"
                raise StateError(f"{store.path} has no stream {stream!r} (streams: {known})")
            del streams[stream]
            store.rewrite()
            return f"stream {stream} removed from {store.path}"
        finally:
            lock.release()
    sources = [s for s in stored_sources(state_dir) if only is None or s in only]
    locks = []
    try:
        locks += [_locked(state_dir, source) for source in sources]
        stamp = file_stamp(now())
        moved = _legacy(state_dir, name, clock).files.move_aside(stamp)
        for source in sources:
            moved += source_store(state_dir, source, name, now).files.move_aside(stamp)
    finally:
        for lock in locks:
            lock.release()
    if not moved:
        return f"{state_dir}: no checkpoint to reset"
    return "checkpoint moved aside to " + ", ".join(str(p) for p in moved)
