"""Compile a key/value mapping into one straight-line Python function (the CEF/LEEF hot path).

A generic interpreter of field paths costs about 300 ns per key; with ~30 keys that alone is 5x the
cost of ``orjson.dumps`` on the whole alert. So, as :mod:`dataclasses` does for ``__init__``, the
mapping is turned into source once per serializer and ``exec``-ed. Only validated names reach the
source (keys match ``[A-Za-z0-9_.-]``, path names ``[A-Za-z0-9_@.-]``) and every literal goes
through :func:`repr`, so config cannot inject code.

The function appends ``"key="`` to ``keys`` and the raw value text (typed, cut to its limit, not yet
cleaned or escaped) to ``values`` for each entry that has a value, labels first.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any

from agent.codecs.base import TruncateHook
from agent.codecs.paths import Path, as_text, evidence_index
from agent.codecs.text import cut, epoch_millis
from agent.model import Alert

Extractor = Callable[[Alert, list[str], list[str]], None]

_IPV4 = re.compile(r"(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)")


def _ip(value: Any, v4: bool, v6: bool) -> str | None:
    for item in value if isinstance(value, list) else (value,):
        if not isinstance(item, str):
            continue
        if v4 and _IPV4.fullmatch(item):
            return item
        if v6 and ":" in item:
            try:
                if ipaddress.ip_address(item).version == 6:
                    return item
            except ValueError:
                continue
    return None


def ipv4(value: Any) -> str | None:
    """The value (or first list item) that is an IPv4 address."""
    return _ip(value, True, False)


def ipv6(value: Any) -> str | None:
    """The value (or first list item) that is an IPv6 address."""
    return _ip(value, False, True)


def ip_any(value: Any) -> str | None:
    """The value (or first list item) that is an IP address."""
    return _ip(value, True, True)


def integer(value: Any) -> str | None:
    """An integer (or string of ASCII digits) as text."""
    if value.__class__ is int:
        return str(value)
    return value if isinstance(value, str) and value.isascii() and value.isdigit() else None


def iso(value: Any) -> str | None:
    """A valid ISO-8601 timestamp string, unchanged."""
    return value if isinstance(value, str) and epoch_millis(value) is not None else None


def _fetch(alt: Path, src: str, var: str = "x") -> list[str]:
    """Lines that set ``var`` from ``src`` following ``alt.keys``."""
    lines = [f"{var} = {src}.get({alt.keys[0]!r})"]
    lines += [f"{var} = {var}.get({k!r}) if {var}.__class__ is dict else None" for k in alt.keys[1:]]
    return lines


def _source(entries: Sequence[Any], converters: dict[int, str]) -> str:
    body = ["def extract(alert, K, V):"]
    if any(alt.evidence for e in entries for alt in e.paths):
        body.append("    idx = evidence_index(alert)")
    for e in entries:
        if e.constant is not None:
            body += [f"    K.append({e.key + '='!r})", f"    V.append({e.constant!r})"]
            continue
        body.append("    v = None")
        for i, alt in enumerate(e.paths):
            pad = "    " if i == 0 else "        "
            if i:
                body.append("    if v is None:")
            if alt.evidence is None:
                body += [pad + line for line in _fetch(alt, "alert")]
                body.append(f"{pad}if x or x == 0: v = x")
            else:
                body.append(f"{pad}for e in idx.get({alt.evidence!r}, ()):")
                body += [pad + "    " + line for line in _fetch(alt, "e")]
                body.append(f"{pad}    if x or x == 0: v = x; break")
        body.append("    if v is not None:")
        conv = converters.get(e.kind)
        if conv is None:
            body.append("        if v.__class__ is not str: v = as_text(v)")
        else:
            body.append(f"        v = {conv}(v)")
        body.append(f"        if v and len(v) > {e.limit}:")
        body.append(
            "            v = None" if e.whole else f"            v = cut(v, {e.limit}, {e.key!r}, hook)"
        )
        body.append("        if v:")
        if e.label is not None:
            body += [f"            K.append({e.label[0] + '='!r})", f"            V.append({e.label[1]!r})"]
        body += [f"            K.append({e.key + '='!r})", "            V.append(v)"]
    return "\n".join(body) + "\n"


def compile_extractor(
    entries: Sequence[Any],
    hook: TruncateHook | None,
    converters: dict[int, Callable[[Any], str | None]],
) -> Extractor:
    """Build the extractor for ``entries`` (:class:`agent.codecs.flat.Entry`); ``converters`` by kind."""
    names = {kind: f"conv{kind}" for kind in converters}
    scope = _scope(names, converters, as_text=as_text, cut=cut, hook=hook)
    extract: Extractor = _define(_source(entries, names), "extract", scope)
    return extract


def _scope(
    names: dict[int, str], converters: dict[int, Callable[[Any], str | None]], **extra: Any
) -> dict[str, Any]:
    """The globals a generated function sees: the helpers it calls and the converters by name."""
    return {"evidence_index": evidence_index, **extra, **{names[k]: fn for k, fn in converters.items()}}


def _define(source: str, name: str, scope: dict[str, Any]) -> Any:
    """Compile generated ``source`` into ``scope`` and return the function ``name`` it defines.

    Only validated field names reach the source and every literal goes through ``repr`` (module doc).
    """
    exec(compile(source, f"<agent.codecs.extract.{name}>", "exec"), scope)  # noqa: S102
    return scope[name]


#: Stand-ins for ``=`` and the pair separator in the fast path's output: control characters, which
#: the caller has checked no value contains, so they can be told apart from value text after joining.
KEY_END, PAIR = "\x01", "\x02"

#: ``(pairs, values, header texts)`` or ``None`` when a value needs cutting (the caller's slow path).
FastExtractor = Callable[[Alert], tuple[str, str, tuple[str, ...]] | None]


def _head_text(value: Any) -> str | None:
    """:func:`agent.codecs.paths.lookup`'s idea of a value, as text; ``None`` for no value."""
    if value is None or value == "" or value == []:  # noqa: PLR1714 (one tuple per call costs more)
        return None
    return as_text(value) or ""


def _text(value: Any) -> str:
    """The text of a present value (``x or x == 0``), else ``""``: what the extractor keeps."""
    return (as_text(value) or "") if value or value == 0 else ""


def _lookup_lines(alts: tuple[Path, ...], var: str, lists: dict[str, str]) -> list[str]:
    """Lines setting ``var`` to the text :func:`agent.codecs.paths.lookup` finds over ``alts`` (or ``""``)."""
    lines = [f"    {var} = None"]
    for i, alt in enumerate(alts):
        pad = "    " if i == 0 else "        " * 1 + "    " * (i - 1)
        if i:
            lines.append(f"{pad[:-4]}if {var} is None:")
        if alt.evidence is None:
            lines += [pad + line for line in _fetch(alt, "alert")]
            lines.append(f"{pad}{var} = x if x.__class__ is str and x else head_text(x)")
        else:
            lines.append(f"{pad}for e in {lists[alt.evidence]}:")
            lines += [pad + "    " + line for line in _fetch(alt, "e")]
            lines.append(f"{pad}    {var} = x if x.__class__ is str and x else head_text(x)")
            lines.append(f"{pad}    if {var} is not None: break")
    lines.append(f"    if {var} is None: {var} = ''")
    return lines


def fast_source(
    entries: Sequence[Any], converters: dict[int, str], headers: Sequence[tuple[Path, ...]]
) -> tuple[str, list[str]]:
    """Source of the fast extractor, and the top-level keys it expects in ``TOP`` (an ``itemgetter``).

    The function returns ``(pairs, values, headers)``: ``pairs`` is ``PAIR key KEY_END value ...``
    joined, ``values`` the values alone (for the caller's character checks). No cut, no hook:
    equivalent to the extractor of :func:`compile_extractor` whenever no value exceeds its limit
    (it returns ``None`` then, before any side effect); constants and label texts are emitted as they
    are, so the caller must only use it when those need no cleaning or escaping. Per entry it costs a
    ``get`` and a type test; the limits are checked per group of equal limit, in C (``max(map(len))``).
    """
    body = ["def fast(alert):", "    g = alert.get"]
    kinds = sorted(
        {a.evidence for e in entries for a in e.paths if a.evidence}
        | {a.evidence for h in headers for a in h if a.evidence}
    )
    if kinds:
        body.append("    idx = evidence_index(alert)")
        body += [f"    ev_{i} = idx.get({kind!r}, ())" for i, kind in enumerate(kinds)]
    lists = {kind: f"ev_{i}" for i, kind in enumerate(kinds)}
    pairs, values, top = [], [], []
    limits: dict[int, list[str]] = {}
    fetch_at = len(body)
    for n, e in enumerate(entries):
        v = f"v{n}"
        values.append(v)
        key = PAIR + e.key + KEY_END
        if e.constant is not None:
            body.append(f"    {v} = {e.constant!r}")
            pairs += [repr(key), v]
            continue
        if e.label is not None:
            key = PAIR + e.label[0] + KEY_END + e.label[1] + key
        pairs += [f"({key!r} if {v} else '')", v]
        conv = converters.get(e.kind)
        if len(e.paths) == 1 and e.paths[0].evidence is None and len(e.paths[0].keys) == 1:
            top.append(e.paths[0].keys[0])
            body.append(f"    x = t{len(top) - 1}")
        elif len(e.paths) == 1 and e.paths[0].evidence is None:
            body += ["    " + line for line in _fetch(e.paths[0], "alert")]
        else:
            body.append("    x = None")
            for i, alt in enumerate(e.paths):
                pad = "    " if i == 0 else "        "
                if i:
                    body.append("    if x is None:")
                if alt.evidence is None:
                    body += [pad + line for line in _fetch(alt, "alert", "y")]
                    body.append(f"{pad}if y or y == 0: x = y")
                else:
                    body.append(f"{pad}for e in {lists[alt.evidence]}:")
                    body += [pad + "    " + line for line in _fetch(alt, "e", "y")]
                    body.append(f"{pad}    if y or y == 0: x = y; break")
        if conv is None:
            body.append(f"    {v} = x if x.__class__ is str else text(x)")
        else:
            body.append(f"    {v} = ({conv}(x) or '') if x or x == 0 else ''")
        if e.whole:
            body.append(f"    if len({v}) > {e.limit}: {v} = ''")
        else:
            limits.setdefault(e.limit, []).append(v)
    if len(top) == 1:
        body.insert(fetch_at, f"    t0 = g({top[0]!r})")
    elif top:  # alerts_v2 alerts carry every property (null when unset): one C call fetches them all
        fetched = ", ".join(f"t{i}" for i in range(len(top)))
        body[fetch_at:fetch_at] = [
            "    try:",
            f"        {fetched}, = TOP(alert)",
            "    except KeyError:",
            f"        {fetched}, = {', '.join(f'g({k!r})' for k in top)},",
        ]
    body.append(f"    vals = ''.join(({', '.join(values)},))")
    for limit, names in sorted(limits.items()):  # no value is longer than all of them together
        body.append(
            f"    if len(vals) > {limit} and max(map(len, ({', '.join(names)},))) > {limit}: return None"
        )
    for i, alts in enumerate(headers):
        body += _lookup_lines(alts, f"h{i}", lists)
    heads = "".join(f"h{i}, " for i in range(len(headers)))
    body.append(f"    return ''.join(({', '.join(pairs)},)), vals, ({heads})")
    return "\n".join(body) + "\n", top


def compile_fast(
    entries: Sequence[Any],
    converters: dict[int, Callable[[Any], str | None]],
    headers: Sequence[tuple[Path, ...]] = (),
) -> FastExtractor:
    """Build the fast extractor of :func:`fast_source` (same safety argument as :func:`compile_extractor`)."""
    names = {kind: f"conv{kind}" for kind in converters}
    scope = _scope(
        names, converters, as_text=as_text, text=_text, head_text=_head_text, itemgetter=itemgetter
    )
    source, top = fast_source(entries, names, headers)
    if len(top) > 1:
        scope["TOP"] = itemgetter(*top)
    fast: FastExtractor = _define(source, "fast", scope)
    return fast
