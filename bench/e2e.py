"""End-to-end throughput: fake Graph backlog → the real agent (one core) → CEF/RFC 5424 over TCP.

    .venv/bin/python -m bench.e2e [--alerts 100000] [--rounds 2] [--profile cprofile|py-spy]

The fake Graph (``bench.fakegraph``, own process, core 0) serves a static backlog of ``--alerts``
alerts, every page rendered before timing starts. Each round runs the **floor** (``bench.floor``)
and then the **agent** (``python -m agent.cli run`` with a TOML config: page_size 1000,
``max_pages_per_window`` at its default (20), ``requests_per_minute`` lifted, queue.max_events
20000, batch.max_events 1000, http disabled, checkpoint every 1 s, TCP sink with octet counting,
codec ``syslog5424`` + ``cef``), each pinned to core 1, each against a fresh receiver
(``bench.receiver``, core 0) that counts messages until all arrived. Rate = messages / (arrival of
the last one - arrival of the first byte); best round of each. Target: agent ≥ 0.6x floor and
≥ 25,000 alerts/s (issue #14: ≥ 0.4x at the default ``max_pages_per_window``).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import procs

FLOOR_RATIO_TARGET = 0.6
#: Issue #14: a backlog at the default max_pages_per_window runs at >= 0.4x the floor.
ISSUE14_RATIO_TARGET = 0.4
RATE_TARGET = 25_000.0
MIB = 1 << 20


def agent_source(page_size: int) -> dict[str, Any]:
    """Source settings for a backlog run: default max_pages_per_window, no rate budget in the way."""
    return {
        "page_size": page_size,
        "poll_interval_secs": 5,
        "initial_lookback_secs": 7200,
        "overlap_secs": 60,
        # Graph's own limit (150/min) would cap any client at 2,500 alerts/s with 1000-alert pages;
        # this measures the agent, so the fake does not throttle and the budget is lifted.
        "requests_per_minute": 1_000_000,
    }


def agent_sink(max_events: int = 20_000) -> dict[str, Any]:
    """Sink queue and batch settings of the throughput run."""
    return {"queue": {"max_events": max_events}, "batch": {"max_events": 1000, "timeout_secs": 0.2}}


def _rate(result: dict[str, Any]) -> tuple[float, float]:
    span = max(1e-9, result["last"] - result["first"])
    return result["frames"] / span, result["bytes"] / span / MIB


def run_floor(work: Path, graph: dict[str, Any], n: int, page_size: int) -> dict[str, Any]:
    """One floor run; its receiver's figures plus the wall time."""
    receiver, port = procs.start_receiver(work, "--framing", "lf", "--expect", str(n), "--seconds", "120")
    started = time.time()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    argv = [procs.PYTHON, "-m", "bench.floor", "--graph", graph["path"], "--port", str(port)]
    argv += ["--page-size", str(page_size)]
    floor = subprocess.run(
        procs.pinned(procs.MEASURED_CORE, argv), cwd=procs.ROOT, capture_output=True, timeout=150, check=True
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # only the floor has been reaped since
    result = procs.receiver_result(receiver, 30)
    result["cpu"] = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    result["wall"] = result["last"] - started
    result["sent"] = int(floor.stdout.strip() or 0)
    return result


def run_agent(
    work: Path,
    graph: dict[str, Any],
    n: int,
    page_size: int,
    profile: str | None,
    tag: str,
    root: Path = procs.AGENT_ROOT,
    gc_threshold: str | None = None,
    defaults: bool = False,
) -> dict[str, Any]:
    """One agent run; its receiver's figures, the wall time, peak RSS and exit code. ``defaults``:
    every source and sink key at its default but ``page_size`` (no tuned budget, queue or batch)."""
    receiver, port = procs.start_receiver(work, "--expect", str(n), "--seconds", "120")
    d = work / f"agent-{tag}"
    d.mkdir()
    source = {"page_size": page_size} if defaults else agent_source(page_size)
    cfg = procs.agent_config(graph, port, d / "state", source, {} if defaults else agent_sink())
    config = procs.write_config(d / "agent.toml", cfg)
    prefix = None
    if profile == "cprofile":
        prefix = [procs.PYTHON, "-m", "cProfile", "-o", str(Path.cwd() / f"e2e-agent-{tag}.pstats")]
    elif profile == "gc" or gc_threshold or os.environ.get("BENCH_GC_THRESHOLD"):
        prefix = [procs.PYTHON, "-m", "bench.gcwrap"]
    started = time.time()
    env = {"BENCH_GC_THRESHOLD": gc_threshold} if gc_threshold else None
    agent = procs.start_agent(config, d / "agent.log", prefix, root, env)
    spy = None
    if profile == "py-spy":  # attached from core 0; writes its file when the agent exits
        out = Path.cwd() / f"e2e-agent-{tag}.txt"
        spy_argv = [str(Path(procs.PYTHON).parent / "py-spy"), "record", "--format", "raw", "--rate", "200"]
        spy_argv += ["--pid", str(agent.pid), "-o", str(out)]
        spy = procs.spawn(procs.pinned(procs.HELPER_CORE, spy_argv), stdout=subprocess.DEVNULL)
    try:
        result = procs.receiver_result(receiver, 150)
        result["rss_mib"] = procs.peak_rss_mib(agent.pid)
        result["cpu"] = procs.cpu_seconds(agent.pid)
    finally:
        result_code = procs.stop(agent, 30)
        procs.stop(receiver)
        if spy is not None:
            spy.wait(30)
    result["wall"] = result["last"] - started
    result["exit"] = result_code
    for line in (d / "agent.log").read_text(errors="replace").splitlines():
        if line.startswith("gc:") or '"level": "error"' in line or "Traceback" in line:
            print(f"  agent: {line[:300]}")
    return result


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run the rounds and print the table; the best figures as a dict."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--alerts", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--profile", choices=("cprofile", "py-spy", "gc"), default=None)
    parser.add_argument(
        "--compare", type=Path, default=None, help="also run the agent imported from this tree, each round"
    )
    parser.add_argument(
        "--compare-gc",
        default=None,
        metavar="T0,T1,T2",
        help="also run the agent with gc.set_threshold(T0, T1, T2) (via bench.gcwrap), each round",
    )
    parser.add_argument(
        "--defaults",
        action="store_true",
        help="also run the agent at default settings (but --page-size) each round, beside the tuned run",
    )
    args = parser.parse_args(argv)
    n = args.alerts
    other = f"agent from {args.compare or 'this tree'}" + (
        f" with gc threshold {args.compare_gc}" if args.compare_gc else ""
    )
    floors: list[dict[str, Any]] = []
    agents: list[dict[str, Any]] = []
    others: list[dict[str, Any]] = []
    defaults: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="siem-bench-e2e-") as tmp:
        work = Path(tmp)
        extra = ["--backlog", str(n), "--page-size", str(args.page_size), "--warm", "--seconds", "280"]
        with procs.fake_graph(work, *extra) as graph:
            for r in range(args.rounds):
                floors.append(run_floor(work, graph, n, args.page_size))
                agents.append(run_agent(work, graph, n, args.page_size, args.profile, str(r)))
                runs = [("floor", floors[-1]), ("agent", agents[-1])]
                if args.compare is not None or args.compare_gc:
                    root = args.compare or procs.AGENT_ROOT
                    others.append(
                        run_agent(work, graph, n, args.page_size, None, f"c{r}", root, args.compare_gc)
                    )
                    runs.append((other, others[-1]))
                if args.defaults:
                    defaults.append(run_agent(work, graph, n, args.page_size, None, f"d{r}", defaults=True))
                    runs.append(("agent at defaults", defaults[-1]))
                for name, res in runs:
                    rate, mib = _rate(res)
                    print(
                        f"  round {r} {name}: {res['frames']} msgs, {rate:,.0f} alerts/s, {mib:.1f} MiB/s, "
                        f"wall {res['wall']:.2f} s, cpu {res['cpu']:.2f} s"
                        + (f", exit {res['exit']}" if "exit" in res else ""),
                        flush=True,
                    )
    floor_rate, floor_mib = max(_rate(r) for r in floors)
    agent_rate, agent_mib = max(_rate(r) for r in agents)
    ratio = agent_rate / floor_rate
    floor_cpu = min(r["cpu"] for r in floors)
    agent_cpu = min(r["cpu"] for r in agents)
    print(f"e2e ({n} alerts, best of {args.rounds}; core-pinned: {procs.pinned('1', []) != []})")
    print(f"  floor: {floor_rate:,.0f} alerts/s, {floor_mib:.1f} MiB/s (JSON lines)")
    print(
        f"  agent: {agent_rate:,.0f} alerts/s, {agent_mib:.1f} MiB/s (RFC 5424 + CEF), "
        f"peak RSS {max(r['rss_mib'] for r in agents):.0f} MiB"
    )
    print(
        f"  agent/floor: {ratio:.2f}  (target >= {FLOOR_RATIO_TARGET}: "
        f"{'met' if ratio >= FLOOR_RATIO_TARGET else 'MISSED'}; issue #14 >= {ISSUE14_RATIO_TARGET}: "
        f"{'met' if ratio >= ISSUE14_RATIO_TARGET else 'MISSED'}); "
        f"alerts/s target >= {RATE_TARGET:,.0f}: {'met' if agent_rate >= RATE_TARGET else 'MISSED'}"
    )
    print(
        f"  CPU seconds (whole process, startup included; robust to a shared core): floor {floor_cpu:.2f}, "
        f"agent {agent_cpu:.2f}; floor/agent {floor_cpu / agent_cpu:.2f}"
    )
    if others:
        other_rate = max(_rate(r) for r in others)[0]
        print(
            f"  {other}: {other_rate:,.0f} alerts/s, {other_rate / floor_rate:.2f} of the "
            f"floor; that / agent: {other_rate / agent_rate:.2f}; CPU seconds "
            f"{min(r['cpu'] for r in others):.2f}"
        )
    if defaults:
        best = max(defaults, key=lambda r: _rate(r)[0])
        default_rate = _rate(best)[0]
        print(
            f"  agent at default settings (page_size {args.page_size}): {default_rate:,.0f} alerts/s "
            f"({best['frames']} of {n} delivered), {default_rate / floor_rate:.2f} of the floor; "
            f"wall {best['wall']:.1f} s"
        )
    return {"floor_rate": floor_rate, "agent_rate": agent_rate, "ratio": ratio, "agent_cpu": agent_cpu}


if __name__ == "__main__":
    main()
