"""What a write-back request may change, validated before anything is sent to Graph.

Updatable properties (Graph docs ``security-alert-update.md``, ``security-incident-update.md``):
alerts ``status``, ``classification``, ``determination``, ``assignedTo``; incidents the same plus
``customTags``. A ``comment`` is added with its own call. Enum members are the wire values of the
enum tables (graph-api reference §1.3, §3); ``unknownFutureValue`` is a sentinel, never a value to
set. Where Graph's prose uses older determination names than its enum table, the error names the
member to use instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from agent.sources.graph.writes import Entity

ALERT_STATUS = ("new", "inProgress", "resolved")
INCIDENT_STATUS = ("active", "inProgress", "resolved", "awaitingAction")
CLASSIFICATION = ("unknown", "falsePositive", "truePositive", "informationalExpectedActivity")
DETERMINATION = (
    "unknown",
    "apt",
    "malware",
    "securityPersonnel",
    "securityTesting",
    "unwantedSoftware",
    "other",
    "multiStagedAttack",
    "compromisedAccount",
    "phishing",
    "maliciousUserActivity",
    "notMalicious",
    "notEnoughDataToValidate",
    "confirmedActivity",
    "lineOfBusinessApplication",
)
#: Names the docs' prose uses for determination members, and the enum member Graph accepts.
DETERMINATION_RENAMED = {
    "compromisedUser": "compromisedAccount",
    "clean": "notMalicious",
    "insufficientData": "notEnoughDataToValidate",
    "confirmedUserActivity": "confirmedActivity",
}
#: Longest comment accepted (characters).
MAX_COMMENT_CHARS = 8000
MAX_ASSIGNED_TO_CHARS = 256
MAX_TAGS = 50
MAX_TAG_CHARS = 256
#: Alert ids look like ``da637551227677560813_-961444813``, incident ids are numbers.
TARGET_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")

STATUS: dict[Entity, tuple[str, ...]] = {"alert": ALERT_STATUS, "incident": INCIDENT_STATUS}
FIELDS: dict[Entity, tuple[str, ...]] = {
    "alert": ("status", "classification", "determination", "assignedTo"),
    "incident": ("status", "classification", "determination", "assignedTo", "customTags"),
}


class UpdateError(ValueError):
    """The request cannot be sent: the message says which field and why (never echoing a secret)."""


@dataclass(frozen=True, slots=True)
class Update:
    """Validated changes (Graph property -> value, in a stable order) and an optional comment."""

    changes: dict[str, Any] = field(default_factory=dict)
    comment: str | None = None

    def describe(self) -> str:
        """``status=resolved, classification=truePositive; comment (42 chars)`` for humans and logs."""
        parts = [f"{k}={_short(v)}" for k, v in self.changes.items()]
        text = ", ".join(parts)
        if self.comment is not None:
            text += ("; " if text else "") + f"comment ({len(self.comment)} chars)"
        return text


def _short(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ",".join(str(v)[:40] for v in value[:5]) + ("…" if len(value) > 5 else "") + "]"
    return str(value)[:80]


def check_target(target: object, entity: Entity) -> str:
    """``target`` as an alert or incident id; raises ``UpdateError``."""
    if not isinstance(target, str) or not TARGET_ID.match(target):
        raise UpdateError(f"{entity} id must be 1-128 letters, digits or _.:- (got {_quote(target)})")
    return target


def _quote(value: object) -> str:
    return repr(value)[:60]


def _enum(name: str, value: object, members: tuple[str, ...]) -> str:
    if not isinstance(value, str):
        raise UpdateError(f"{name} must be a string, one of: {', '.join(members)}")
    if value in members:
        return value
    hint = ""
    if name == "determination" and value in DETERMINATION_RENAMED:
        hint = f" (Graph's enum member for {value!r} is {DETERMINATION_RENAMED[value]!r})"
    raise UpdateError(f"{name} {_quote(value)} is not one of: {', '.join(members)}{hint}")


def parse_update(entity: Entity, doc: object, extra: frozenset[str] = frozenset()) -> Update:
    """Validate a request body (a JSON object) for ``entity``; raises ``UpdateError``.

    Keys beyond the updatable properties, ``comment`` and ``extra`` (keys the caller handles, such
    as ``id``) are refused, so a typo never silently drops a change.
    """
    if not isinstance(doc, dict):
        raise UpdateError("the body must be a JSON object")
    allowed = FIELDS[entity]
    unknown = sorted(k for k in doc if k not in allowed and k != "comment" and k not in extra)
    if unknown:
        names = ", ".join(_quote(k) for k in unknown[:5])
        raise UpdateError(f"unknown field(s) {names}; {entity}s take {', '.join(allowed)} and comment")
    changes: dict[str, Any] = {}
    for key in allowed:
        if key not in doc:
            continue
        value = doc[key]
        if key == "status":
            changes[key] = _enum("status", value, STATUS[entity])
        elif key == "classification":
            changes[key] = _enum("classification", value, CLASSIFICATION)
        elif key == "determination":
            changes[key] = _enum("determination", value, DETERMINATION)
        elif key == "assignedTo":
            changes[key] = _assignee(value)
        else:
            changes[key] = _tags(value)
    comment = doc.get("comment")
    if comment is not None and (not isinstance(comment, str) or not comment.strip()):
        raise UpdateError("comment must be a non-empty string")
    if isinstance(comment, str) and len(comment) > MAX_COMMENT_CHARS:
        raise UpdateError(f"comment is longer than {MAX_COMMENT_CHARS} characters")
    if not changes and comment is None:
        raise UpdateError(f"nothing to do: give at least one of {', '.join(allowed)}, comment")
    return Update(changes, comment)


def _assignee(value: object) -> str | None:
    if value is None or value == "":
        return None  # unassign
    if not isinstance(value, str) or len(value) > MAX_ASSIGNED_TO_CHARS:
        raise UpdateError(
            f"assignedTo must be a string of at most {MAX_ASSIGNED_TO_CHARS} characters or null"
        )
    return value


def _tags(value: object) -> list[str]:
    if not isinstance(value, list) or not all(
        isinstance(t, str) and 0 < len(t) <= MAX_TAG_CHARS for t in value
    ):
        raise UpdateError(f"customTags must be a list of strings of 1-{MAX_TAG_CHARS} characters")
    if len(value) > MAX_TAGS:
        raise UpdateError(f"customTags holds at most {MAX_TAGS} tags")
    return list(value)
