"""Shared core of the ``key=value`` codecs (CEF, LEEF): compiled mappings, typed values, size fitting."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from agent.codecs.base import TruncateHook
from agent.codecs.extract import compile_extractor, integer, ip_any, ipv4, ipv6, iso
from agent.codecs.paths import Path, compile_path, full_path
from agent.codecs.text import clean, epoch_millis, shrink
from agent.errors import EncodeError
from agent.model import Alert

_SPACES = itertools.repeat(" ")
#: Turns a raw value into the text a key of some kind takes, or ``None`` when it does not fit the kind.
Converter = Callable[[Any], str | None]
#: Value kinds; ``PATH`` takes a ``fileDetails`` object (or a path text) and gives the full path.
STR, TIME, IPV4, IPV6, INT, ISO, IP, PATH = range(8)

#: A default entry: (key, field path, label key, label text); label key/text may be empty.
Default = tuple[str, str, str, str]


@dataclass(frozen=True, slots=True)
class Entry:
    """One compiled ``key = path`` entry, or a constant when ``paths`` is empty."""

    key: str
    paths: tuple[Path, ...]
    kind: int
    limit: int
    constant: str | None = None
    #: Written just before the value, only when there is a value (``cs1Label`` for ``cs1``).
    label: tuple[str, str] | None = None
    #: Omit rather than truncate (an id cut short is a wrong id).
    whole: bool = False


def compile_entries(
    defaults: Iterable[Default],
    use_defaults: bool,
    mapping: Mapping[str, str],
    constants: Mapping[str, str],
    kind_of: Callable[[str], int],
    limit_of: Callable[[str], int],
    whole: frozenset[str] = frozenset(),
) -> tuple[Entry, ...]:
    """Merge the default mapping with the user's (override in place, ``""`` removes, new keys appended)."""
    order: dict[str, tuple[str, tuple[str, str] | None]] = {}
    if use_defaults:
        for key, path, label_key, label in defaults:
            order[key] = (path, (label_key, label) if label_key else None)
    for key, path in mapping.items():
        if key in order and order[key][0] == path:
            continue
        order[key] = (path, None)  # an overridden value drops the default label: it would be wrong
    entries = [
        Entry(key, compile_path(path), kind_of(key), limit_of(key), label=label, whole=key in whole)
        for key, (path, label) in order.items()
        if path
    ]
    entries += [Entry(k, (), STR, limit_of(k), constant=v) for k, v in constants.items()]
    return tuple(entries)


class Mapper:
    """Turns an alert into parallel lists of ``"key="`` and clean value text for one compiled mapping."""

    def __init__(
        self,
        entries: tuple[Entry, ...],
        hook: TruncateHook | None,
        keep_newlines: bool,
        converters: Mapping[int, Converter] | None = None,
    ) -> None:
        self.entries = entries
        self.keep_newlines = keep_newlines
        kinds: dict[int, Converter] = {
            TIME: epoch_millis,
            ISO: iso,
            INT: integer,
            IPV4: ipv4,
            IPV6: ipv6,
            IP: ip_any,
            PATH: full_path,
        }
        #: The converter of each value kind (the defaults overridden by ``converters``).
        self.converters = kinds | dict(converters or {})
        self._extract = compile_extractor(entries, hook, self.converters)

    def run(self, alert: Alert) -> tuple[list[str], list[str]]:
        """``(keys, values)``: values cut to their limits, text policy applied, trailing spaces trimmed."""
        keys: list[str] = []
        values: list[str] = []
        self._extract(alert, keys, values)
        # C-level passes decide whether any value needs the slow path (isprintable: no control char,
        # no surrogate; endswith: trailing spaces the spec calls ambiguous).
        if "".join(values).isprintable() and not any(map(str.endswith, values, _SPACES)):
            return keys, values
        keep = self.keep_newlines
        pairs = [(k, clean(v, keep).rstrip(" ")) for k, v in zip(keys, values, strict=True)]
        pairs = [(k, v) for k, v in pairs if v]
        return [k for k, _ in pairs], [v for _, v in pairs]


@dataclass(slots=True)
class Part:
    """A shrinkable piece of a message: its raw text, how it is rendered, its fixed overhead in bytes."""

    name: str
    text: str | None
    render: Callable[[str], str]
    overhead: int
    required: bool = False

    def size(self) -> int:
        return 0 if self.text is None else len(self.render(self.text).encode()) + self.overhead


def fit(parts: list[Part], fixed: int, max_bytes: int, hook: TruncateHook | None) -> None:
    """Shrink the largest parts (in place) until ``fixed`` + their sizes is at most ``max_bytes``.

    A part that cannot keep even the marker is dropped (``text = None``), or emptied when
    ``required``. Raises ``EncodeError`` if the fixed bytes alone exceed the limit.
    """
    sizes = [p.size() for p in parts]
    for _ in range(4 * len(parts) + 4):
        excess = fixed + sum(sizes) - max_bytes
        if excess <= 0:
            return
        live = [i for i, p in enumerate(parts) if p.text]
        if not live:
            break
        i = max(live, key=sizes.__getitem__)
        part = parts[i]
        assert part.text is not None
        if hook is not None:
            hook(part.name)
        # Cut the largest part by the whole excess, but not below a fair share of the budget, so
        # several big parts end up similar in size instead of the first one vanishing.
        fair = (max_bytes - fixed) // len(live) - part.overhead
        target = max(sizes[i] - part.overhead - excess, fair)
        part.text = shrink(part.text, part.render, target) if target > 0 else None
        if part.text is None and part.required:
            part.text = ""
        sizes[i] = part.size()
    if fixed + sum(sizes) > max_bytes:
        raise EncodeError(f"message cannot fit in {max_bytes} bytes")
