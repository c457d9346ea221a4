"""Graph timestamps kept as the strings Graph sent.

Graph writes ``lastUpdateDateTime`` with seven fractional digits (``…:27.7211305Z``), one more than
:class:`datetime.datetime` keeps. Cursors are therefore the raw strings; comparison goes through
:func:`sort_key`, which pads the fraction so strings of different precision order correctly.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_TS = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$")
#: Graph's usual form (seven fractional digits, ``Z``): its key is the string with two zeros appended.
_GRAPH_FORM = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{7}Z")


def sort_key(ts: str) -> str:
    """Return a string that orders like the instant ``ts`` names (UTC, nine fractional digits).

    Raises ``ValueError`` for a string that is not an ISO-8601 timestamp with a zone.
    """
    if _GRAPH_FORM.fullmatch(ts) is not None:  # the common case, without the groups and the format
        return ts[:27] + "00Z"
    m = _TS.match(ts)
    if m is None:
        raise ValueError(f"not an ISO-8601 timestamp with zone: {ts[:64]!r}")
    base, frac, zone = m.group(1), m.group(2) or "", m.group(3)
    if zone not in ("Z", "+00:00", "-00:00"):
        dt = datetime.fromisoformat(base + zone).astimezone(UTC)
        base = dt.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{frac.ljust(9, '0')}Z"


def parse(ts: str) -> datetime:
    """Parse to an aware datetime (microsecond precision: for arithmetic, never for cursors)."""
    key = sort_key(ts)
    return datetime.fromisoformat(key[:26]).replace(tzinfo=UTC)


def minus_seconds(ts: str, seconds: float) -> str:
    """``ts`` minus ``seconds``, formatted with seven fractional digits, keeping the 7th digit of ``ts``."""
    key = sort_key(ts)
    whole = datetime.fromisoformat(key[:19]).replace(tzinfo=UTC)  # C-fast, unlike strptime
    frac_ns = int(key[20:29])
    total_ns = frac_ns - round(seconds * 1_000_000_000)
    shifted = whole + timedelta(seconds=total_ns // 1_000_000_000)
    rem = total_ns % 1_000_000_000
    return f"{shifted:%Y-%m-%dT%H:%M:%S}.{rem // 100:07d}Z"


def format_dt(dt: datetime) -> str:
    """Format an aware datetime the way Graph does (seven fractional digits, ``Z``)."""
    dt = dt.astimezone(UTC)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{dt.microsecond * 10:07d}Z"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Graph's precision: 100-ns ticks (seven fractional digits) per second.
TICKS_PER_SECOND = 10_000_000


def to_ticks(ts: str) -> int:
    """``ts`` as 100-ns ticks since the epoch (Graph's 7-digit precision; finer digits are floored)."""
    key = sort_key(ts)
    whole = datetime.fromisoformat(key[:19]).replace(tzinfo=UTC)
    return int((whole - _EPOCH).total_seconds()) * TICKS_PER_SECOND + int(key[20:27])


def from_ticks(ticks: int) -> str:
    """100-ns ticks since the epoch as a Graph timestamp (seven fractional digits, ``Z``)."""
    seconds, frac = divmod(ticks, TICKS_PER_SECOND)
    return f"{_EPOCH + timedelta(seconds=seconds):%Y-%m-%dT%H:%M:%S}.{frac:07d}Z"


def tick_after(ts: str) -> str:
    """The instant one tick (100 ns) after ``ts``: ``lt tick_after(t)`` includes ``t`` itself."""
    return from_ticks(to_ticks(ts) + 1)
