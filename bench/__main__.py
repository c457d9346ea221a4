"""``python -m bench``: every benchmark in turn, bounded in time (``make bench``, about 11 minutes).

Codecs and the checkpoint's cost per batch (in process), then end-to-end throughput against the
floor (20,000 and 100,000 alerts), Graph requests against the minimum (``bench.requests``: first
run, steady state, backfill, and issue #14's 660 alerts under 60 requests/min), peak RSS with a
blocked sink, alert-to-receiver latency, and one agent with 1 then 1,000 tenants (``bench.tenants``:
RSS, start, idle CPU, poll bursts; the 1-tenant run is the same-run baseline of the 1,000-tenant
ratios; ``make bench-tenants`` runs 1, 100, 500 and 1,000) — each with its own
fake Graph and receiver processes. Each prints its figures beside its targets.
"""

from __future__ import annotations

import sys
import time

from bench import checkpoint, codecs, e2e, latency, memory, requests, tenants


def main() -> None:
    """Run the benchmarks; each prints its figures as ratios to its own baseline or beside its target."""
    started = time.monotonic()
    argv0 = sys.argv[0]
    sys.argv = [argv0, "--seconds", "0.5"]
    codecs.main()
    sys.argv = [argv0]
    checkpoint.main([])
    # issue #14: default page size; queue, batch, budget and poll timing are bench.e2e's tuned ones
    e2e.main(["--alerts", "20000", "--page-size", "500", "--rounds", "2"])
    e2e.main(["--alerts", "100000", "--rounds", "2"])
    requests.main([])
    memory.main(["--alerts", "1000000", "--seconds", "30"])
    latency.main(["--seconds", "30", "--rate", "10"])
    tenants.main(["--tenants", "1,1000"])  # 1 first: the baseline of the ratios
    print(f"bench: all done in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
