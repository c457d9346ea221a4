"""Summarise a py-spy ``--format raw`` profile (collapsed stacks): top functions, self and inclusive.

    .venv/bin/python -m bench.flame e2e-agent-0.txt [--top 15] [--idle]

Self share: samples whose innermost frame is the function. Inclusive: samples with the function
anywhere on the stack. Shares are of the busy samples (the event loop's ``select`` and executor
threads waiting for work excluded, unless ``--idle``); line numbers are dropped, so a function's
lines add up. Groups: each busy sample counted once, in the first of ``GROUPS`` its stack touches.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")
#: Leaf frames that mean waiting: the loop's selector, an executor thread waiting for work.
_IDLE = ("EpollSelector.select (", "PollSelector.select (", "_worker (futures/thread.py)")


def _name(frame: str) -> str:
    """``func (path/to/file.py:12)`` → ``func (file.py)``."""
    func, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    return f"{func} ({'/'.join(path.split('/')[-2:])})"


#: Where a busy sample's time goes, first match on any frame of its stack (order matters: a codec
#: runs inside the runner, a checkpoint write inside an acknowledgement).
GROUPS = (
    ("codec (encode: CEF + RFC 5424)", ("(codecs/", "agent.codecs")),
    ("checkpoint", ("agent/checkpoint.py",)),
    ("startup (imports)", ("importlib",)),
    ("Graph page parse (orjson.loads, GC it triggers)", ("GraphClient._once",)),
    ("HTTP/TLS reading (aiohttp, ssl)", ("aiohttp/", "ssl.py", "sslproto.py")),
    ("poller (dedup, window bookkeeping)", ("graph/poller.py",)),
    ("TCP sink (write, ack wait)", ("sinks/tcp.py",)),
    ("runner/queue (batching, acks, freeing sent alerts)", ("(pipeline/",)),
)


def group_of(frames: list[str]) -> str:
    """The ``GROUPS`` name of one stack (``other`` if none matches)."""
    for name, marks in GROUPS:
        if any(m in f for f in frames for m in marks):
            return name
    return "other (event loop, metrics, logging)"


def summarise(text: str, idle: bool) -> tuple[int, Counter[str], Counter[str]]:
    """(busy samples, self counts, inclusive counts)."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        m = _LINE.match(line)
        if m is None:
            continue
        frames = [_name(f) for f in m.group("stack").split(";") if f]
        if not frames or (not idle and frames[-1].startswith(_IDLE)):
            continue
        n = int(m.group("count"))
        total += n
        own[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
        incl["group: " + group_of(frames)] += n
    return total, own, incl


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("profile")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--idle", action="store_true")
    args = parser.parse_args()
    total, own, incl = summarise(Path(args.profile).read_text(), args.idle)
    print(f"{total} busy samples")
    groups = Counter({k: v for k, v in incl.items() if k.startswith("group: ")})
    for k in groups:
        del incl[k]
    for title, counts in (("groups", groups), ("self", own), ("inclusive", incl)):
        print(f"-- {title}")
        for name, n in counts.most_common(args.top):
            print(f"{100 * n / max(1, total):5.1f}%  {name}")


if __name__ == "__main__":
    main()
