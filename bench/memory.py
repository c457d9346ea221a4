"""Peak RSS of the agent while its sink is blocked and a million alerts wait at the source.

    .venv/bin/python -m bench.memory [--alerts 1000000] [--seconds 40]

The fake Graph (``bench.fakegraph``, core 0) holds a backlog of ``--alerts`` alerts rendered lazily
from a seed (nothing per alert is stored, so a million costs nothing); the receiver accepts the
agent's connection and never reads (``bench.receiver --mode stall``). The agent (core 1) fetches
until its sink queue is full, then the source is paused by backpressure. Peak RSS is ``VmHWM`` from
``/proc/<pid>/status`` once it has not grown for 4 s (or after ``--seconds``). Three configurations:
the defaults (page_size 500, queue.max_events 2000, batch.max_events 500), queue.max_events 10000
and the throughput bench's (1000 / 20000 / 1000). Target: ≤ 100 MiB.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import e2e, procs

TARGET_MIB = 100.0
STEADY_SECS = 4.0

CONFIGS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("defaults (page 500, queue 2000, batch 500)", {"page_size": 500}, {}),
    ("larger queue (page 500, queue 10000, batch 500)", {"page_size": 500}, {"queue": {"max_events": 10000}}),
    ("e2e settings (page 1000, queue 20000, batch 1000)", {"page_size": 1000}, e2e.agent_sink()),
]


def measure(
    work: Path, graph: dict[str, Any], source: dict[str, Any], sink: dict[str, Any], seconds: float, tag: str
) -> dict[str, float]:
    """One blocked run; peak and final RSS in MiB and how long it took to settle."""
    receiver, port = procs.start_receiver(work, "--mode", "stall", "--seconds", str(seconds + 30))
    d = work / f"agent-{tag}"
    d.mkdir()
    src = {**e2e.agent_source(1000), **source}
    cfg = procs.agent_config(graph, port, d / "state", src, sink)
    agent = procs.start_agent(procs.write_config(d / "agent.toml", cfg), d / "agent.log")
    started = time.monotonic()
    peak, changed = 0.0, started
    try:
        while time.monotonic() - started < seconds and agent.poll() is None:
            time.sleep(0.25)
            now_peak = procs.vm_mib(agent.pid, "VmHWM:")
            if now_peak > peak + 0.5:
                peak, changed = now_peak, time.monotonic()
            elif time.monotonic() - changed >= STEADY_SECS and peak > 0:
                break
        result = {
            "peak": procs.vm_mib(agent.pid, "VmHWM:"),
            "rss": procs.vm_mib(agent.pid, "VmRSS:"),
            "settled": changed - started,
        }
    finally:
        procs.stop(agent, 20)
        procs.stop(receiver)
    return result


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run both configurations; print and return peak RSS per configuration."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--alerts", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=40.0)
    args = parser.parse_args(argv)
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="siem-bench-mem-") as tmp:
        work = Path(tmp)
        with procs.fake_graph(work, "--backlog", str(args.alerts), "--seconds", "280") as graph:
            print(f"memory: sink blocked, {args.alerts:,} alerts waiting at the fake Graph")
            for i, (name, source, sink) in enumerate(CONFIGS):
                r = measure(work, graph, source, sink, args.seconds, str(i))
                verdict = "met" if r["peak"] <= TARGET_MIB else "MISSED"
                print(
                    f"  {name}: peak RSS {r['peak']:.0f} MiB (now {r['rss']:.0f} MiB, settled after "
                    f"{r['settled']:.1f} s); target <= {TARGET_MIB:.0f} MiB: {verdict}",
                    flush=True,
                )
                out[name] = r["peak"]
    return out


if __name__ == "__main__":
    main()
