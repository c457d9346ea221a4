"""The values that flow through the pipeline.

An alert stays the JSON object Graph sent (an ``orjson``-parsed ``dict``): no model objects, no
renamed or dropped fields, unknown enum members and evidence types passed through untouched.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

Alert = Mapping[str, Any]


@dataclass(slots=True)
class Commit:
    """What the checkpoint records for a stream once a batch is delivered everywhere.

    ``seen`` maps alert id to the ``lastUpdateDateTime`` forwarded; ``cursor`` is set only on the
    last batch of a complete poll (a cursor taken mid-poll could skip alerts on later pages,
    because Graph orders newest first). ``prune_before`` lets the store forget ``seen`` entries
    older than any future query can return (cursor minus overlap), which bounds its size.
    """

    seen: dict[str, str] = field(default_factory=dict)
    cursor: str | None = None
    prune_before: str | None = None


@dataclass(slots=True)
class Batch:
    """Alerts from one stream plus the checkpoint change that their delivery earns.

    ``seq`` is assigned by the ack tracker, increasing per stream in source order.
    """

    stream: str
    alerts: list[Alert]
    commit: Commit
    seq: int = -1


@dataclass(frozen=True, slots=True)
class Event:
    """One alert as a sink sends it: the original alert and its serialized (unframed) bytes."""

    alert: Alert
    payload: bytes


def alert_key(alert: Alert) -> tuple[str, str]:
    """The identity of one alert *version*: ``(id, lastUpdateDateTime)``."""
    return str(alert.get("id", "")), str(alert.get("lastUpdateDateTime", ""))
