"""Text hygiene shared by every codec: control characters, lone surrogates, truncation, timestamps.

Policy (the same in every text codec, documented in docs/codecs.md):

* TAB, CR and LF become spaces; every other C0 control, DEL, C1 control and lone surrogate becomes
  U+FFFD, so no NUL, CR, LF or invalid UTF-8 can reach a receiver raw. Codecs that can escape CR
  and LF (CEF extension values) ask to keep them and escape them themselves.
* A value longer than its limit is cut and ends with :data:`MARK`; each cut is reported through the
  codec's :data:`~agent.codecs.base.TruncateHook` with a bounded field name.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from agent.codecs.base import TruncateHook

#: Appended to every truncated value.
MARK = "…[truncated]"
_MARK_BYTES = len(MARK.encode())

_BAD_ALL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\ud800-\udfff]")
_BAD_KEEP_NL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: The whole-second part of a timestamp that :class:`EpochMillis` may cache (ASCII digits only).
_HEAD = re.compile(r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d", re.ASCII)


def clean(text: str, keep_newlines: bool = False) -> str:
    """Return ``text`` with the control-character policy applied (same length: one char for one)."""
    if text.isprintable():
        return text
    text = text.replace("\t", " ")
    if keep_newlines:
        return _BAD_KEEP_NL.sub("\ufffd", text)
    return _BAD_ALL.sub("\ufffd", text.replace("\r", " ").replace("\n", " "))


def fix_surrogates(text: str) -> str:
    """Replace lone surrogates (not encodable as UTF-8) by U+FFFD, keeping everything else."""
    return _SURROGATE.sub("\ufffd", text)


def repair(value: Any) -> Any:
    """A copy of a JSON value with lone surrogates replaced, non-string keys and huge ints made strings."""
    if isinstance(value, str):
        return fix_surrogates(value)
    if isinstance(value, dict):
        return {fix_surrogates(k) if isinstance(k, str) else str(k): repair(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [repair(v) for v in value]
    if isinstance(value, int) and not -(2**63) <= value < 2**64:
        return str(value)  # beyond what JSON readers (and orjson) hold exactly
    return value


def cut(text: str, limit: int, name: str, hook: TruncateHook | None) -> str:
    """``text`` limited to ``limit`` characters, the last ones being :data:`MARK` when it was cut."""
    if len(text) <= limit:
        return text
    if hook is not None:
        hook(name)
    keep = limit - len(MARK)
    return text[:keep] + MARK if keep > 0 else MARK[:limit]


def shrink(text: str, render: Callable[[str], str], max_bytes: int) -> str | None:
    """The longest prefix of ``text`` + :data:`MARK` whose ``render`` is at most ``max_bytes`` UTF-8 bytes.

    ``render`` is the codec's escaping; searching on the raw text means an escape sequence is never
    cut in half. Returns ``None`` when not even the marker fits.
    """
    if max_bytes < _MARK_BYTES:
        return None
    lo, hi = 0, len(text) - 1
    while lo < hi:  # largest n with size(text[:n] + MARK) <= max_bytes; at most log2(len) steps
        mid = (lo + hi + 1) // 2
        if len(render(text[:mid] + MARK).encode()) <= max_bytes:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo] + MARK


def epoch_millis(value: object) -> str | None:
    """An ISO-8601 timestamp (Graph's 7-digit form included) as integer epoch milliseconds, or ``None``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        return None
    dt = parse_time(value)
    if dt is None:
        return None
    delta = dt - _EPOCH
    return str(delta.days * 86_400_000 + delta.seconds * 1000 + delta.microseconds // 1000)


def parse_time(value: str) -> datetime | None:
    """Parse an ISO-8601 timestamp with a zone (naive ones are taken as UTC); ``None`` if it is not one."""
    if len(value) < 19 or value[4] != "-" or value[10] not in "Tt ":
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt


def utc_fraction(value: str) -> str | None:
    """The fraction digits of a ``…SS.digitsZ`` or ``…SSZ`` timestamp (``""``), read after position 19.

    ``None`` when the part after the first 19 characters is anything else (offsets, ``.Z``, ...).
    """
    tail = value[19:]
    if tail == "Z":
        return ""
    if tail[:1] == "." and tail[-1:] == "Z":
        digits = tail[1:-1]
        if digits.isdigit() and digits.isascii():
            return digits
    return None


class EpochMillis:
    """:func:`epoch_millis` with a bounded cache of the whole-second part of UTC timestamps.

    ``YYYY-MM-DDTHH:MM:SS[.digits]Z`` (what Graph sends) then costs a dict lookup and one ``int``;
    any other form, and the first sight of each second, take :func:`epoch_millis`. The cache belongs
    to one serializer (no global state) and is emptied when it reaches ``size`` entries.
    """

    def __init__(self, size: int = 4096) -> None:
        self._seconds: dict[str, int | None] = {}
        self._size = size

    def __call__(self, value: object) -> str | None:
        if isinstance(value, str):
            digits = utc_fraction(value)
            if digits is not None:
                head = value[:19]
                try:
                    base = self._seconds[head]
                except KeyError:
                    base = self._learn(head)
                if base is not None:
                    return str(base + int(digits[:3].ljust(3, "0"))) if digits else str(base)
        return epoch_millis(value)

    def _learn(self, head: str) -> int | None:
        """Epoch ms of a whole second ``head``; ``None`` (cached too) when it is not the plain form."""
        millis = epoch_millis(head + "Z") if _HEAD.fullmatch(head) else None
        base = int(millis) if millis is not None else None
        if len(self._seconds) >= self._size:
            self._seconds.clear()
        self._seconds[head] = base
        return base
