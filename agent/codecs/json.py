"""JSON serializer: the raw Graph alert, key order preserved, one compact object per message.

orjson escapes every control character, so CR, LF and NUL never appear raw. Lone surrogates (not
encodable as UTF-8) are replaced by U+FFFD instead of failing the alert; non-string keys become
strings. A message over ``max_message_bytes`` has its longest strings cut (marker
:data:`~agent.codecs.text.MARK`, each cut counted under its top-level field name); if that cannot
be enough, only the alert's identifying scalar fields are kept, with ``"siemAgentTruncated": true``.
"""

from __future__ import annotations

from typing import Any

import orjson

from agent.codecs.base import TruncateHook
from agent.codecs.config import JsonCodecConfig
from agent.codecs.text import MARK, fix_surrogates, repair
from agent.errors import EncodeError
from agent.model import Alert


def _words(text: str) -> list[str]:
    return text.split()


#: Field names reported to the truncation hook as themselves (anything else is ``other``): bounded.
KNOWN_FIELDS = frozenset(
    _words(
        "id providerAlertId incidentId status severity classification determination serviceSource "
        "detectionSource detectorId tenantId title description recommendedActions category assignedTo "
        "alertWebUrl incidentWebUrl actorDisplayName threatDisplayName threatFamilyName mitreTechniques "
        "createdDateTime lastUpdateDateTime resolvedDateTime firstActivityDateTime lastActivityDateTime "
        "comments evidence systemTags additionalData alertPolicyId productName customDetails @timestamp "
        "ecs event message rule threat host user file process url related organization observer tags "
        "microsoft "
    )
)
_KEEP_WHEN_OVERSIZED = _words(
    "@odata.type id providerAlertId incidentId tenantId status severity serviceSource "
    "detectionSource detectorId category title alertWebUrl createdDateTime lastUpdateDateTime "
)


#: Short identity fields are never cut (an alert that cannot be told apart is worthless).
_IDENTITY = frozenset(
    ["id", "providerAlertId", "incidentId", "tenantId", "createdDateTime", "lastUpdateDateTime", "severity"]
)


def _name(key: str) -> str:
    return key if key in KNOWN_FIELDS else "other"


def dumps(value: Any) -> bytes:
    """``orjson.dumps``, repairing lone surrogates and non-string keys instead of failing."""
    try:
        return orjson.dumps(value)
    except TypeError:
        pass
    try:
        return orjson.dumps(repair(value))
    except TypeError as exc:
        raise EncodeError(f"alert is not JSON-serialisable: {exc}") from None


def _capped(value: Any, cap: int, cut: set[str], top: str) -> Any:
    if isinstance(value, str):
        if len(value) > cap:
            cut.add(top)
            return fix_surrogates(value[: max(cap - len(MARK), 0)]) + MARK
        return value
    if isinstance(value, dict):
        return {k: _capped(v, cap, cut, top) for k, v in value.items()}
    if isinstance(value, list):
        return [_capped(v, cap, cut, top) for v in value]
    return value


def _longest(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return max((_longest(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return max((_longest(v) for v in value), default=0)
    return 0


def _with_cap(doc: dict[str, Any], cap: int) -> tuple[bytes, set[str]]:
    cut: set[str] = set()
    capped = {
        k: v if k in _IDENTITY and isinstance(v, str) and len(v) <= 256 else _capped(v, cap, cut, _name(k))
        for k, v in doc.items()
    }
    return dumps(capped), cut


def fit_json(doc: dict[str, Any], max_bytes: int, hook: TruncateHook | None) -> bytes:
    """Encode ``doc`` in at most ``max_bytes``: cut strings to the largest common length that fits."""
    lo, hi = len(MARK), _longest(doc)
    out, cut = _with_cap(doc, lo)
    if len(out) > max_bytes:
        small = {
            k: doc[k] for k in _KEEP_WHEN_OVERSIZED if k in doc and isinstance(doc[k], str | int | float)
        }
        small["siemAgentTruncated"] = True
        out, cut = _with_cap(small, min(256, _longest(small)) or lo)
        cut.add("other")
        if len(out) > max_bytes:
            raise EncodeError(f"alert cannot fit in {max_bytes} bytes")
    else:
        while lo < hi:  # largest cap that fits; at most log2(longest string) encodings
            mid = (lo + hi + 1) // 2
            candidate = _with_cap(doc, mid)
            if len(candidate[0]) <= max_bytes:
                lo, (out, cut) = mid, candidate
            else:
                hi = mid - 1
    if hook is not None:
        for name in sorted(cut):
            hook(name)
    return out


class JsonSerializer:
    """Encodes the alert as compact JSON (UTF-8, no trailing newline)."""

    def __init__(self, config: JsonCodecConfig, on_truncate: TruncateHook | None = None) -> None:
        self.config = config
        self._hook = on_truncate
        self._max = config.max_message_bytes

    def encode(self, alert: Alert) -> bytes:
        """Return the JSON message; raises ``EncodeError`` for a value JSON cannot hold."""
        try:
            out = orjson.dumps(alert)
        except TypeError:
            out = dumps(alert)
        if len(out) <= self._max:
            return out
        return fit_json(dict(alert), self._max, self._hook)

    def encode_within(self, alert: Alert, max_bytes: int) -> bytes:
        """Return the JSON message in at most ``max_bytes``."""
        out = dumps(alert)
        return out if len(out) <= max_bytes else fit_json(dict(alert), max_bytes, self._hook)
