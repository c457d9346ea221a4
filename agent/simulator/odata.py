"""The OData ``$filter`` subset the simulator understands (what the Graph source sends).

``{lastUpdateDateTime|createdDateTime} {ge|gt|le|lt} <timestamp>`` and ``serviceSource eq '<member>'``
joined by ``and`` (Graph docs ``security-list-alerts_v2.md``); anything else, and unknown
serviceSource members, raise ``ValueError`` (the simulator answers 400, as Graph does).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

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
        key = sort_key(a[prop])
        return {"ge": key >= bound, "gt": key > bound, "le": key <= bound, "lt": key < bound}[op]

    return test
