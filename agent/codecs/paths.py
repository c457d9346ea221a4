"""Field paths: where a codec mapping takes a value from in an alerts_v2 alert.

Syntax (checked when the config is loaded)::

    title                                   top-level property
    additionalData.foo                      nested object property
    evidence[deviceEvidence].deviceDnsName  first evidence of that @odata.type having the property
    evidence[*].ipAddress                   first evidence of any type having it
    a | b                                   first alternative with a value

Values become text: strings as they are, numbers and booleans as JSON writes them, lists of scalars
joined with ``,``, objects as compact JSON. ``None``, empty strings and empty lists are "no value".
Evidence of unknown or missing ``@odata.type`` simply matches nothing but ``[*]``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from agent.codecs.text import repair
from agent.model import Alert

_NAME = r"[A-Za-z_@][A-Za-z0-9_@.\-]*"
_STEP = re.compile(rf"^(?:evidence\[(\*|[A-Za-z][A-Za-z0-9]*)\]\.)?({_NAME})$")


# Field paths both default mappings (CEF, LEEF) read: where alerts_v2 evidence keeps each fact.
DEVICE = "evidence[deviceEvidence]"
USER = "evidence[userEvidence].userAccount"
PROCESS = "evidence[processEvidence]"
FILE = "evidence[fileEvidence].fileDetails"
HOST_NAME = f"{DEVICE}.deviceDnsName | {DEVICE}.hostName"
IP_ADDRESS = f"evidence[ipEvidence].ipAddress | {DEVICE}.ipInterfaces"
USER_NAME = f"{USER}.accountName | {PROCESS}.userAccount.accountName"
USER_DOMAIN = f"{USER}.domainName | {PROCESS}.userAccount.domainName"
FILE_NAME = f"{FILE}.fileName"
#: The whole ``fileDetails`` object: :func:`full_path` joins its directory and file name.
FILE_PATH = FILE
FILE_HASH = f"{FILE}.sha256 | {FILE}.sha1"
URL = "evidence[urlEvidence].url"


@dataclass(frozen=True, slots=True)
class Path:
    """One alternative: an optional evidence type (``*`` = any) and the property names to follow."""

    evidence: str | None
    keys: tuple[str, ...]


def join_path(directory: str | None, name: str | None) -> str | None:
    """``directory`` + ``name`` joined by the directory's own separator; ``None`` if either is missing."""
    if directory and name:
        sep = "\\" if "\\" in directory else "/"
        return directory.rstrip(sep) + sep + name
    return None


def full_path(value: Any) -> str | None:
    """A file's full path: ``filePath`` (Graph's directory) + ``fileName`` of a ``fileDetails`` object.

    A string (a user mapping that points at a path text) is kept as it is. Consumers of CEF/LEEF
    ``filePath`` (e.g. Sentinel's CommonSecurityLog.FilePath) expect the full path, file name included.
    """
    if isinstance(value, str):
        return value or None
    if isinstance(value, dict):
        directory, name = value.get("filePath"), value.get("fileName")
        if isinstance(directory, str) and isinstance(name, str):
            return join_path(directory, name)
    return None


def compile_path(spec: str) -> tuple[Path, ...]:
    """Parse a path spec; raises ``ValueError`` with the reason when it is malformed."""
    alts = []
    for raw in spec.split("|"):
        m = _STEP.match(raw.strip())
        if m is None:
            raise ValueError(f"bad field path {raw.strip()!r} (see docs/codecs.md, field paths)")
        alts.append(Path(m.group(1), tuple(m.group(2).split("."))))
    return tuple(alts)


def evidence_index(alert: Alert) -> dict[str, list[Mapping[str, Any]]]:
    """Group the alert's evidence by short type name (``deviceEvidence``), in order; ``*`` holds all."""
    index: dict[str, list[Mapping[str, Any]]] = {"*": []}
    evidence = alert.get("evidence")
    if not isinstance(evidence, list):
        return index
    every = index["*"]
    for item in evidence:
        if item.__class__ is not dict:
            continue
        every.append(item)
        kind = item.get("@odata.type")
        if kind.__class__ is str:
            short = kind[kind.rfind(".") + 1 :]
            group = index.get(short)
            if group is None:
                index[short] = [item]
            else:
                group.append(item)
    return index


def _follow(obj: Any, keys: Sequence[str]) -> Any:
    for key in keys:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def lookup(alert: Alert, alts: tuple[Path, ...], index: dict[str, list[Mapping[str, Any]]] | None) -> Any:
    """The raw value of the first alternative with one (``index`` from :func:`evidence_index`)."""
    for alt in alts:
        if alt.evidence is None:
            value = _follow(alert, alt.keys)
            if value is not None and value not in ("", []):
                return value
            continue
        for item in (index or {}).get(alt.evidence, ()):
            value = _follow(item, alt.keys)
            if value is not None and value not in ("", []):
                return value
    return None


def as_text(value: Any) -> str | None:
    """Render a raw value as text (see module docstring); ``None`` for no value."""
    if isinstance(value, str):
        return value or None
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        if value.__class__ is list and "" not in value:
            try:  # the common case, a list of non-empty strings (mitreTechniques): all in C
                return ",".join(value) or None
            except TypeError:
                pass
        parts = [t for t in (as_text(v) if not isinstance(v, list | dict) else _json(v) for v in value) if t]
        return ",".join(parts) or None
    return _json(value)


def _json(value: Any) -> str | None:
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # lone surrogates
        return orjson.dumps(repair(value)).decode()
