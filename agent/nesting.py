"""Cutting JSON values that are nested too deeply to encode.

Graph alerts are a few levels deep, but nothing stops an upstream from sending one nested hundreds of
levels: orjson refuses to write more than 254 levels, and recursive Python code (codecs, the standard
``json`` module) stops near 1000. Such an alert is encoded again as a copy in which every container
deeper than ``MAX_DEPTH`` levels is replaced by ``CUT_MARKER`` (the codecs' failure path, the dead-letter
file, and the fingerprint of an item without an id all use this). Normal alerts never pass through here.
"""

from __future__ import annotations

from typing import Any

#: Containers (objects, arrays) below the alert itself that are kept; deeper ones are replaced.
MAX_DEPTH = 64
CUT_MARKER = f"[cut: nested deeper than {MAX_DEPTH} levels]"


def cut_depth(value: Any, max_depth: int = MAX_DEPTH) -> tuple[Any, int]:
    """A copy of ``value`` with every container below ``max_depth`` levels replaced by ``CUT_MARKER``,
    and how many were replaced (0: the copy equals ``value``). Recursion never goes deeper than
    ``max_depth``, so any depth is safe to pass."""
    cuts = 0

    def copy(v: Any, depth: int) -> Any:
        nonlocal cuts
        if isinstance(v, dict):
            if depth >= max_depth:
                cuts += 1
                return CUT_MARKER
            return {k: copy(x, depth + 1) for k, x in v.items()}
        if isinstance(v, list | tuple):
            if depth >= max_depth:
                cuts += 1
                return CUT_MARKER
            return [copy(x, depth + 1) for x in v]
        return v

    return copy(value, -1 if isinstance(value, dict | list | tuple) else 0), cuts
