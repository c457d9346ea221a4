"""A loopback syslog receiver for the benchmarks, in its own process.

    .venv/bin/python -m bench.receiver --dir DIR --mode count|stall|latency [--framing octet|lf]
        [--expect N] [--seconds S]

Listens on 127.0.0.1 (a free port, written to ``DIR/receiver.port``) and prints one JSON line when
done. ``count``: counts framed messages and bytes until ``--expect`` arrived, and reports the
arrival time of the first byte and of the last expected message. ``latency``: also reads each RFC
5424 TIMESTAMP (the alert's ``lastUpdateDateTime``) and reports arrival minus it per message, until
``--expect`` or ``--seconds``. ``stall``: accepts connections and never reads (a blocked SIEM).
Every mode ends after ``--seconds`` at the latest.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import orjson

CHUNK = 1 << 20


@dataclass(slots=True)
class Tally:
    """What arrived, over all connections."""

    expect: int
    frames: int = 0
    nbytes: int = 0
    first: float = 0.0
    last: float = 0.0
    connections: int = 0
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    #: (RFC 5424 TIMESTAMP, arrival minus it) per message, in ``latency`` mode.
    latencies: list[tuple[float, float]] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)


def split_octet(buf: bytes) -> tuple[list[bytes], bytes]:
    """Complete RFC 6587 octet-counted frames of ``buf`` (their messages) and the unparsed rest."""
    out = []
    pos = 0
    size = len(buf)
    while True:
        sp = buf.find(b" ", pos, pos + 12)
        if sp < 0:
            break
        end = sp + 1 + int(buf[pos:sp])
        if end > size:
            break
        out.append(buf[sp + 1 : end])
        pos = end
    return out, buf[pos:]


def count_octet(buf: bytes) -> tuple[int, bytes]:
    """The number of complete octet-counted frames in ``buf`` and the rest (no copies)."""
    n = 0
    pos = 0
    size = len(buf)
    while True:
        sp = buf.find(b" ", pos, pos + 12)
        if sp < 0:
            break
        end = sp + 1 + int(buf[pos:sp])
        if end > size:
            break
        n += 1
        pos = end
    return n, buf[pos:]


def stamp_of(message: bytes) -> float:
    """Epoch seconds of an RFC 5424 message's TIMESTAMP (``<PRI>1 2026-…Z …``)."""
    ts = message.split(b" ", 2)[1].decode()
    return datetime.fromisoformat(ts).timestamp()


async def _handle(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tally: Tally, mode: str, framing: str
) -> None:
    tally.connections += 1
    tally.writers.append(writer)
    if mode == "stall":
        await tally.done.wait()
        writer.transport.abort()
        return
    rest = b""
    while not tally.done.is_set():
        chunk = await reader.read(CHUNK)
        if not chunk:
            break
        now = time.time()
        if not tally.first:
            tally.first = now
        tally.nbytes += len(chunk)
        if framing == "lf":
            n = chunk.count(b"\n")
        elif mode == "latency":
            messages, rest = split_octet(rest + chunk)
            n = len(messages)
            tally.latencies += [(stamp, now - stamp) for stamp in map(stamp_of, messages)]
        else:
            n, rest = count_octet(rest + chunk)
        tally.frames += n
        if n:
            tally.last = now
        if tally.expect and tally.frames >= tally.expect:
            tally.done.set()
    writer.close()


async def run(args: argparse.Namespace) -> dict[str, object]:
    """Receive until done (see the module docstring); the figures as a dict."""
    tally = Tally(args.expect)
    server = await asyncio.start_server(
        lambda r, w: _handle(r, w, tally, args.mode, args.framing), "127.0.0.1", 0, limit=CHUNK
    )
    port = server.sockets[0].getsockname()[1]
    out = Path(args.dir)
    (out / "receiver.port.tmp").write_text(str(port))
    (out / "receiver.port.tmp").replace(out / "receiver.port")
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(args.seconds):
            await tally.done.wait()
    tally.done.set()
    server.close()
    for w in tally.writers:  # handlers still reading see EOF and end
        w.transport.abort()
    await asyncio.sleep(0.05)
    return {
        "frames": tally.frames,
        "bytes": tally.nbytes,
        "first": tally.first,
        "last": tally.last,
        "connections": tally.connections,
        "latencies": tally.latencies,
    }


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--mode", choices=("count", "stall", "latency"), default="count")
    parser.add_argument("--framing", choices=("octet", "lf"), default="octet")
    parser.add_argument("--expect", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=120.0)
    result = asyncio.run(run(parser.parse_args()))
    print(orjson.dumps(result).decode(), flush=True)


if __name__ == "__main__":
    main()
