"""The OData subset the simulator understands (what the Graph source sends), and one list page.

``$filter``: ``{lastUpdateDateTime|createdDateTime} {ge|gt|le|lt} <timestamp>`` and ``serviceSource
eq '<member>'`` joined by ``and`` (Graph docs ``security-list-alerts_v2.md``); anything else, and
unknown serviceSource members, raise ``ValueError`` (the simulator answers 400, as Graph does).

``list_page`` answers one list request the way those docs and ``concepts/paging.md`` describe: the
filtered items newest first (by ``lastUpdateDateTime``, then id), ``$top`` of them from the
``$skiptoken`` offset, ``@odata.count`` when ``$count=true`` (items matching the filter, not the
page), and an ``@odata.nextLink`` carrying the same query with the offset moved on while more follow.
Items a test breaks on purpose (no ``id``, a time field that is not a timestamp) are listed by every
time filter and sorted last, like a server that lists them whatever the query says.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

from agent.timestamps import sort_key

_CLAUSE = re.compile(
    r"^(?:(lastUpdateDateTime|createdDateTime)\s+(ge|gt|le|lt)\s+(\S+)|serviceSource\s+eq\s+'([^']*)')$"
)
#: serviceSource members (Graph docs ``security-alert.md`` enum table); others are a 400, as on Graph.
SERVICE_SOURCE_ENUM = frozenset(
    {
        "unknown",
        "microsoftDefenderForEndpoint",
        "microsoftDefenderForIdentity",
        "microsoftDefenderForCloudApps",
        "microsoftDefenderForOffice365",
        "microsoft365Defender",
        "azureAdIdentityProtection",
        "microsoftAppGovernance",
        "dataLossPrevention",
        "unknownFutureValue",
        "microsoftDefenderForCloud",
        "microsoftSentinel",
        "microsoftThreatIntelligence",
    }
)


def compile_filter(text: str) -> Callable[[dict[str, Any]], bool]:
    """The OData subset the source sends; anything else is a 400, as on Graph."""
    tests: list[Callable[[dict[str, Any]], bool]] = []
    for clause in filter(None, (c.strip() for c in text.split(" and "))):
        m = _CLAUSE.match(clause)
        if m is None:
            raise ValueError(f"unsupported filter clause {clause[:60]!r}")
        prop, op, value, source = m.groups()
        if source is not None and source not in SERVICE_SOURCE_ENUM:
            raise ValueError(f"invalid serviceSource enum value {source[:60]!r}")
        if source is not None:
            tests.append(_source_test(source))
        else:
            tests.append(_time_test(prop, op, sort_key(value)))
    return lambda a: all(t(a) for t in tests)


def _source_test(source: str) -> Callable[[dict[str, Any]], bool]:
    return lambda a: a.get("serviceSource") == source


def _time_test(prop: str, op: str, bound: str) -> Callable[[dict[str, Any]], bool]:
    def test(a: dict[str, Any]) -> bool:
        key = _key(a.get(prop))
        if key is None:  # a broken item (tests of hostile answers) is listed whatever the filter says
            return True
        return {"ge": key >= bound, "gt": key > bound, "le": key <= bound, "lt": key < bound}[op]

    return test


def _key(value: object) -> str | None:
    try:
        return sort_key(value) if isinstance(value, str) else None
    except ValueError:
        return None


def next_link(link_base: str, query: Mapping[str, str], skip: int) -> str:
    """The nextLink of the page after this one: the same query (less ``$count``), offset at ``skip``."""
    params = {k: v for k, v in query.items() if k not in ("$skiptoken", "$count")}
    params["$skiptoken"] = str(skip)
    return f"{link_base}?{urlencode(params)}"


def list_page(
    items: list[dict[str, Any]], query: Mapping[str, str], link_base: str, default_top: int
) -> tuple[dict[str, Any], int]:
    """The page ``query`` asks for (``value``, ``@odata.count``, ``@odata.nextLink``) without
    ``@odata.context``, and the offset after it (``next_link`` is built from it). Raises ``ValueError``
    for a query Graph would answer with 400."""
    top = int(query.get("$top", default_top))
    skip = int(query.get("$skiptoken", "0"))
    if top < 1 or skip < 0:
        raise ValueError("$top must be positive and $skiptoken not negative")
    keep = compile_filter(query.get("$filter", ""))
    chosen = [a for a in items if keep(a)]
    chosen.sort(key=lambda a: (_key(a.get("lastUpdateDateTime")) or "", str(a.get("id", ""))), reverse=True)
    doc: dict[str, Any] = {}
    if query.get("$count") == "true":
        doc["@odata.count"] = len(chosen)
    doc["value"] = chosen[skip : skip + top]
    if skip + top < len(chosen):
        doc["@odata.nextLink"] = next_link(link_base, query, skip + top)
    return doc, skip + top
