"""The floor: the least a Graph-to-TCP forwarder in Python must do, to compare the agent with.

    .venv/bin/python -m bench.floor --graph GRAPH_JSON --port PORT [--page-size 1000] [--since TS]

One client-credentials token request, then the same alerts_v2 query the agent sends (same
``$filter`` on ``lastUpdateDateTime``, same ``$top``), following ``@odata.nextLink`` with aiohttp;
each page parsed with ``orjson.loads``, each alert written as one line (``orjson.dumps`` + LF) to a
TCP connection, one write per page. No dedup, checkpoint, encoding, retries or acknowledgement.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import orjson


async def run(args: argparse.Namespace, graph: dict[str, Any]) -> int:
    """Forward every listed alert once; the number forwarded."""
    ctx = ssl.create_default_context(cafile=graph["ca"])
    base = graph["base"]
    _, writer = await asyncio.open_connection("127.0.0.1", args.port)
    sent = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as session:
        form = {
            "grant_type": "client_credentials",
            "client_id": graph["client_id"],
            "client_secret": graph["client_secret"],
            "scope": "https://graph.microsoft.com/.default",
        }
        async with session.post(f"{base}/{graph['tenant_id']}/oauth2/v2.0/token", data=form) as resp:
            token = orjson.loads(await resp.read())["access_token"]
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        url: str | None = f"{base}/v1.0/security/alerts_v2"
        params: dict[str, str] | None = {
            "$filter": f"lastUpdateDateTime ge {args.since}",
            "$top": str(args.page_size),
        }
        for _ in range(args.max_pages):
            if url is None:
                break
            async with session.get(url, params=params, headers=headers) as resp:
                doc = orjson.loads(await resp.read())
            alerts = doc["value"]
            writer.write(b"".join([orjson.dumps(a) + b"\n" for a in alerts]))
            await writer.drain()
            sent += len(alerts)
            url, params = doc.get("@odata.nextLink"), None
    writer.close()
    await writer.wait_closed()
    return sent


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--graph", required=True, help="graph.json written by bench.fakegraph")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--since", default="2000-01-01T00:00:00Z")
    parser.add_argument("--max-pages", type=int, default=10_000)
    args = parser.parse_args()
    print(asyncio.run(run(args, orjson.loads(Path(args.graph).read_bytes()))))


if __name__ == "__main__":
    main()
