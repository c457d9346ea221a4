"""The Graph simulator in its own process, for the end-to-end benchmarks.

    .venv/bin/python -m bench.fakegraph --dir DIR [--backlog N] [--warm] [--rate R] [--seconds S]

Writes ``DIR/graph.json`` (base URL, tenant, app, secret, CA bundle, backlog bounds) once it serves,
then serves HTTPS (throwaway CA from ``agent.simulator.tls.make_tls``) on 127.0.0.1 until SIGTERM,
stdin closing or ``--seconds``. ``--backlog N``: a static, lazily rendered backlog of N alerts
(``SyntheticBacklog``), the newest one ``--backlog-age`` seconds old; ``--warm`` renders every page
of it (``--page-size``) before announcing — the floor's offset pages and the agent's descent — so
no client pays for rendering. ``--rate R``: create R
alerts per second (live alerts, for latency), timestamped at creation. ``--any-tenant``: issue
tokens for any tenant id and app (``GraphSimulator(any_tenant=True)``); ``--request-log FILE``: on
exit, write every request as a JSON line ``[monotonic time, tenant, client id, path, status]``
(``time.monotonic`` is the same clock in every process of the machine).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from agent.simulator.backlog import SyntheticBacklog
from agent.simulator.server import GraphSimulator, server_ssl_context
from agent.simulator.tls import make_tls
from agent.timestamps import tick_after

#: Oldest backlog alert relative to the newest (the spacing is derived from it).
BACKLOG_SPAN_SECS = 1800.0
ALL = "lastUpdateDateTime ge 2000-01-01T00:00:00Z"


def warm_descent(backlog: SyntheticBacklog, page: int) -> None:
    """Render the pages the agent asks for: the newest page, then the newest ``page + 1`` below the
    oldest timestamp on it plus one tick (the one alert at the cut comes back; ``reader.py``)."""
    top: str | None = None
    size = page
    for _ in range(backlog.n + 1):
        query = ALL if top is None else f"{ALL} and lastUpdateDateTime lt {top}"
        _, total = backlog.page(query, 0, size)
        if total <= size:
            return
        top, size = tick_after(backlog.timestamp(total - size)), page + 1


async def serve(args: argparse.Namespace) -> None:
    """Serve until stopped (see the module docstring)."""
    out = Path(args.dir)
    tls = make_tls(out / "tls")
    sim = GraphSimulator(seed=args.seed, any_tenant=args.any_tenant)
    info: dict[str, object] = {}
    if args.backlog:
        newest = datetime.now(UTC) - timedelta(seconds=args.backlog_age)
        spacing = BACKLOG_SPAN_SECS / args.backlog
        start = newest - timedelta(seconds=spacing * (args.backlog - 1))
        pages = -(-args.backlog // args.page_size)
        sim.backlog = SyntheticBacklog(
            args.backlog, start, spacing, sim.tenant_id, cached_pages=2 * pages + 16 if args.warm else 64
        )
        if args.warm:
            for p in range(pages):  # the floor's pages (offsets)
                sim.backlog.page(ALL, p * args.page_size, args.page_size)
            warm_descent(sim.backlog, args.page_size)  # the agent's (newest page of what is left)
        info["backlog_first"] = sim.backlog.timestamp(0)
    base = await sim.start(server_ssl_context(str(tls.cert), str(tls.key)))
    if args.rate:
        sim.start_generator(args.rate)
    info |= {
        "base": base,
        "tenant_id": sim.tenant_id,
        "client_id": sim.client_id,
        "client_secret": sim.client_secret,
        "ca": str(tls.ca_cert),
    }
    tmp = out / "graph.json.tmp"
    tmp.write_bytes(orjson.dumps(info))
    tmp.replace(out / "graph.json")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    fd = sys.stdin.fileno()
    loop.add_reader(fd, lambda: None if os.read(fd, 1 << 16) else stop.set())  # EOF: the parent is gone
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(args.seconds):
            await stop.wait()
    loop.remove_reader(fd)
    await sim.stop()
    if args.request_log:
        lines = (orjson.dumps([r.at, r.tenant, r.client_id, r.path, r.status]) + b"\n" for r in sim.requests)
        await asyncio.to_thread(Path(args.request_log).write_bytes, b"".join(lines))


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--backlog", type=int, default=0)
    parser.add_argument("--backlog-age", type=float, default=60.0)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--warm", action="store_true")
    parser.add_argument("--rate", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--any-tenant", action="store_true")
    parser.add_argument("--request-log", default="")
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
