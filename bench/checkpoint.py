"""Cost of recording one acknowledged batch in the checkpoint: the journal vs. the old full rewrite.

    .venv/bin/python -m bench.checkpoint [--keys 1000,200000] [--batch 500] [--dir DIR]

For each state size (remembered alert keys, ``max_seen_ids`` defaults to 200,000) and one batch of
``--batch`` new keys:

* **journal** (``agent.checkpoint.CheckpointStore``, what the agent does now): ``apply`` + ``save`` =
  encode one record, append it, fsync. Compaction is kept out of this figure (its threshold set out of
  reach) and measured on its own:
* **journal, amortised**: the same batches with compaction at its real threshold (journal as large
  as the snapshot), background snapshot writes included, total time / batches;
* **full rewrite** (the agent before the journal, baseline in the same run): the whole document as
  indented JSON to a temporary file, fsync, rename, fsync of the directory, per batch.

Each figure is the median over the repeats (p90 beside it); the directory should be on the disk the
state directory lives on (default: a temporary directory under the current one, not /tmp's tmpfs).
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from agent.checkpoint import CheckpointStore, StreamState
from agent.checkpoint.snapshot import write_snapshot
from agent.model import Commit

STREAM = "bench/alerts_v2/all"
TS = "2026-11-27T10:00:00.1234567Z"


def keys(start: int, n: int) -> dict[str, str]:
    return {f"da{i:032x}": TS for i in range(start, start + n)}


def timed(repeats: int, step: Callable[[int], None]) -> list[float]:
    out = []
    for i in range(repeats):
        t0 = time.perf_counter()
        step(i)
        out.append(time.perf_counter() - t0)
    return out


def full_rewrite(path: Path, streams: dict[str, StreamState]) -> int:
    """The old ``CheckpointStore.save``: the whole document, indented, written atomically."""
    doc = {
        "version": 1,
        "agent": "bench",
        "written_at": TS,
        "streams": {n: {"cursor": s.cursor, "seen": s.seen} for n, s in sorted(streams.items())},
    }
    data = orjson.dumps(doc, option=orjson.OPT_INDENT_2)
    write_snapshot(path, data)
    return len(data)


def run(state_keys: int, batch: int, directory: Path, repeats: int) -> dict[str, float]:
    base = keys(0, state_keys)
    # Journal, compaction out of reach.
    d = directory / f"journal-{state_keys}"
    store = CheckpointStore(d, "bench", lambda: TS, compact_min_bytes=1 << 40)
    store.open()
    store.apply(STREAM, Commit(seen=dict(base), cursor=TS))
    store.save()
    size_before = store.files.journal.stat().st_size

    def journal_step(i: int) -> None:
        store.apply(STREAM, Commit(seen=keys(state_keys + (i + 1) * batch, batch)))
        store.save()

    journal = timed(repeats, journal_step)
    appended = (store.files.journal.stat().st_size - size_before) / repeats
    # Journal with compaction at its real threshold: enough batches for several compactions.
    d2 = directory / f"amortised-{state_keys}"
    store2 = CheckpointStore(d2, "bench", lambda: TS)
    store2.open()
    store2.apply(STREAM, Commit(seen=dict(base), cursor=TS))
    store2.rewrite()
    snapshot = store2.path.stat().st_size
    record = len(orjson.dumps(keys(0, batch))) + 40
    batches = max(repeats, int(3 * max(snapshot, 1 << 20) / record) + 1)
    t0 = time.perf_counter()
    for i in range(batches):
        store2.apply(STREAM, Commit(seen=keys(10**9 + i * batch, batch)))
        store2.save()
    store2.wait_compaction()
    amortised = (time.perf_counter() - t0) / batches
    # The old way, same state, same batches.
    streams = {STREAM: StreamState(TS, dict(base))}
    path = directory / f"rewrite-{state_keys}" / "bench.checkpoint.json"
    rewrite_sizes: list[int] = []

    def rewrite_step(i: int) -> None:
        # The state stays at ``state_keys``: the batch's keys come in, as many of the oldest go.
        seen = streams[STREAM].seen
        for old in list(itertools.islice(seen, min(batch, len(seen)))):
            del seen[old]
        seen.update(keys(2 * 10**9 + i * batch, batch))
        rewrite_sizes.append(full_rewrite(path, streams))

    rewrite = timed(max(3, repeats // 5) if state_keys > 50_000 else repeats, rewrite_step)
    q = statistics.quantiles
    return {
        "journal_ms": statistics.median(journal) * 1e3,
        "journal_p90_ms": q(journal, n=10)[-1] * 1e3,
        "journal_bytes": appended,
        "amortised_ms": amortised * 1e3,
        "compactions": store2.compactions,
        "amortised_batches": batches,
        "rewrite_ms": statistics.median(rewrite) * 1e3,
        "rewrite_p90_ms": q(rewrite, n=10)[-1] * 1e3 if len(rewrite) > 1 else rewrite[0] * 1e3,
        "rewrite_bytes": statistics.median(rewrite_sizes),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--keys", default="1000,200000", help="remembered keys per run, comma-separated")
    p.add_argument("--batch", type=int, default=500, help="keys per acknowledged batch (batch.max_events)")
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--dir", type=Path, default=None, help="where to write (default: ./.bench-checkpoint-*)")
    args = p.parse_args(argv)
    directory = args.dir or Path(tempfile.mkdtemp(prefix=".bench-checkpoint-", dir=os.getcwd()))
    try:
        print(f"checkpoint save per batch of {args.batch} keys, files in {directory}")
        print(
            f"{'remembered keys':>15} | {'journal ms (p90)':>17} | {'appended':>9} | {'amortised ms':>12} "
            f"| {'full rewrite ms (p90)':>22} | {'rewritten':>10} | {'rewrite / journal':>17} "
            f"| {'rewrite / amortised':>19}"
        )
        print(
            "(rewrite / journal: compaction disabled, compact_min_bytes = 1 << 40; rewrite / amortised: "
            "compaction at its default threshold, the agent's default setting)"
        )
        for n in (int(k) for k in args.keys.split(",")):
            r = run(n, args.batch, directory, args.repeats)
            print(
                f"{n:>15,} | {r['journal_ms']:>8.2f} ({r['journal_p90_ms']:>6.2f}) | "
                f"{r['journal_bytes'] / 1024:>6.1f} KiB | {r['amortised_ms']:>12.2f} | "
                f"{r['rewrite_ms']:>12.2f} ({r['rewrite_p90_ms']:>7.2f}) | "
                f"{r['rewrite_bytes'] / 2**20:>6.2f} MiB | {r['rewrite_ms'] / r['journal_ms']:>16.1f}x | "
                f"{r['rewrite_ms'] / r['amortised_ms']:>18.1f}x"
            )
            print(
                f"{'':>15}   amortised over {r['amortised_batches']} batches with "
                f"{r['compactions']} background compaction(s)"
            )
    finally:
        if args.dir is None:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
