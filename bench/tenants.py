"""Many tenants in one agent: RSS, start time, idle CPU and how polls spread (issue #17).

    .venv/bin/python -m bench.tenants [--tenants 1,100,500,1000] [--interval 60] [--idle 60]

Per tenant count N: the fake Graph (``bench.fakegraph --any-tenant``, its own process on core 0)
issues tokens for any tenant and serves empty alert lists; a receiver (core 0) takes the TCP sink's
connection; the agent (core 1) runs N ``graph_security`` sources (tenant ``bench-0000``...,
``poll_interval_secs = --interval``) and one TCP sink, with ``/healthz`` on a loopback port.

Measured, all from outside the agent:

* **start**: from ``exec`` of the agent to ``/healthz`` answering 200 *and* the log line "Agent
  started." (written once every owned source has its task and its first poll scheduled); CPU to
  start is the agent's user+system time at that moment;
* **RSS**: ``VmRSS`` right after start, and ``VmRSS``/``VmHWM`` at the end, after every source has
  polled at least twice (its MSAL app, token and HTTP connection exist by then);
* **idle CPU**: the agent's user+system time over ``--idle`` seconds of steady state (from one
  interval plus 5 s after start: every first poll and token request is behind), as % of one core;
* **bursts**: from the fake Graph's request log, the Graph list requests (polls) per 1-second bin
  over the whole run; the largest bin as % of N (target ≤ 5 %).

Targets at 1,000 tenants: RSS ≤ 256 MiB, start ≤ 10 s, idle CPU ≤ 2 % of one core, no second
with more than 5 % of the tenants' polls. A run with N = 1 is the baseline of the ratios.
"""

from __future__ import annotations

import argparse
import collections
import socket
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson

from bench import procs

TARGETS = {"rss_mib": 256.0, "start_secs": 10.0, "idle_cpu_pct": 2.0, "burst_pct": 5.0}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def metric_series(port: int) -> int:
    """Samples on ``/metrics`` (lines that are not comments): the series count a scrape stores."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as resp:
        text: str = resp.read().decode()
    return sum(1 for line in text.splitlines() if line and not line.startswith("#"))


def config(
    graph: dict[str, Any], sink_port: int, http_port: int, state: Path, n: int, interval: float, **top: Any
) -> dict[str, Any]:
    sources = [
        {
            "type": "graph_security",
            "name": f"t{i:04d}",
            "tenant_id": f"bench-{i:04d}",
            "client_id": graph["client_id"],
            "client_secret": graph["client_secret"],
            "authority_url": graph["base"],
            "graph_url": graph["base"],
            "ca_bundle": graph["ca"],
            "poll_interval_secs": interval,
        }
        for i in range(n)
    ]
    return {
        "name": "bench",
        "state_dir": str(state),
        "shutdown_timeout_secs": 5,
        "log": {"level": "info", "format": "json"},
        "http": {"address": "127.0.0.1", "port": http_port},
        "sources": sources,
        "sinks": [
            {
                "type": "tcp",
                "name": "siem",
                "host": "127.0.0.1",
                "port": sink_port,
                "framing": "octet_counting",
                "codec": {"type": "syslog5424", "hostname": "bench", "msg": {"type": "cef"}},
            }
        ],
        **top,
    }


def measure(work: Path, n: int, interval: float, idle: float, **top: Any) -> dict[str, float]:
    """One agent with ``n`` tenants; the figures of the module docstring."""
    run = work / f"n{n}"
    run.mkdir()
    request_log = run / "requests.jsonl"
    total = 2 * interval + idle + 60
    receiver, sink_port = procs.start_receiver(
        run, "--mode", "count", "--expect", "1000000000", "--seconds", str(total + 60)
    )
    with procs.fake_graph(
        run, "--any-tenant", "--request-log", str(request_log), "--seconds", str(total + 60)
    ) as g:
        http_port = free_port()
        cfg = config(g, sink_port, http_port, run / "state", n, interval, **top)
        path = procs.write_config(run / "agent.toml", cfg)
        log = run / "agent.log"
        began = time.monotonic()
        agent = procs.start_agent(path, log)
        try:
            for _ in range(int(120 / 0.02)):
                if agent.poll() is not None:
                    raise RuntimeError(f"agent exited ({agent.returncode}): {log.read_text()[-2000:]}")
                if healthy(http_port) and b'"Agent started."' in log.read_bytes():
                    break
                time.sleep(0.02)
            else:
                raise RuntimeError("agent did not start within 120 s")
            start_secs = time.monotonic() - began
            start_cpu = procs.cpu_seconds(agent.pid)
            rss_start = procs.vm_mib(agent.pid)
            steady_from = began + start_secs + interval + 5
            time.sleep(max(0.0, steady_from - time.monotonic()))
            cpu0, t0 = procs.cpu_seconds(agent.pid), time.monotonic()
            time.sleep(idle)
            cpu1, t1 = procs.cpu_seconds(agent.pid), time.monotonic()
            rss_end, hwm = procs.vm_mib(agent.pid), procs.vm_mib(agent.pid, "VmHWM:")
            series = metric_series(http_port)
        finally:
            procs.stop(agent, 20)
    procs.stop(receiver)
    polls = [
        r[0] for r in map(orjson.loads, request_log.read_bytes().splitlines()) if r[3].endswith("/alerts_v2")
    ]
    bins = collections.Counter(int(at) for at in polls)
    tenants = {r[1] for r in map(orjson.loads, request_log.read_bytes().splitlines()) if r[1]}
    return {
        "tenants": n,
        "start_secs": start_secs,
        "start_cpu_secs": start_cpu,
        "rss_start_mib": rss_start,
        "rss_mib": rss_end,
        "hwm_mib": hwm,
        "idle_cpu_pct": 100.0 * (cpu1 - cpu0) / (t1 - t0),
        "polls": len(polls),
        "tenants_polled": len(tenants),
        "burst_max": max(bins.values(), default=0),
        "burst_pct": 100.0 * max(bins.values(), default=0) / n,
        "series": series,
    }


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--tenants", default="1,100,500,1000")
    parser.add_argument("--interval", type=float, default=60.0)
    parser.add_argument("--idle", type=float, default=60.0)
    parser.add_argument("--no-per-tenant-metrics", action="store_true")
    args = parser.parse_args(argv)
    top: dict[str, Any] = {"metrics": {"per_tenant": False}} if args.no_per_tenant_metrics else {}
    results = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-tenants-") as tmp:
        for n in (int(x) for x in args.tenants.split(",")):
            results.append(measure(Path(tmp), n, args.interval, args.idle, **top))
            print(orjson.dumps(results[-1]).decode(), flush=True)
    base = results[0] if results and results[0]["tenants"] == 1 else None
    print(f"\nbench.tenants (poll_interval_secs {args.interval:g}, idle window {args.idle:g} s)")
    print(
        "| tenants | start s | CPU to start s | RSS start MiB | RSS MiB (x 1 tenant) | peak MiB "
        "| idle CPU % | max polls in 1 s (% of N) | /metrics series |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        ratio = f" ({r['rss_mib'] / base['rss_mib']:.2f}x)" if base else ""
        print(
            f"| {r['tenants']:,} | {r['start_secs']:.2f} | {r['start_cpu_secs']:.2f} "
            f"| {r['rss_start_mib']:.0f} | "
            f"{r['rss_mib']:.0f}{ratio} | {r['hwm_mib']:.0f} | {r['idle_cpu_pct']:.2f} | "
            f"{r['burst_max']} ({r['burst_pct']:.1f} %) | {r['series']:,} |"
        )
    print(f"targets at 1,000: {TARGETS}; took {time.monotonic() - started:.0f} s")
    return results


if __name__ == "__main__":
    main()
