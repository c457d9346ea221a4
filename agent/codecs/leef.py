"""IBM QRadar LEEF 2.0 serializer.

``LEEF:2.0|Vendor|Product|Version|EventID|<delimiter>|key=value<delimiter>key=value``

LEEF defines no escaping for attribute values, so the delimiter cannot be escaped: occurrences of it
in a value become U+FFFD (pick a delimiter that does not occur in your data; default ``^``). The text
policy of :mod:`agent.codecs.text` applies (CR/LF/TAB become spaces, other controls U+FFFD). Header
fields escape ``\\`` and ``|`` with a backslash. ``devTime`` is written as
``MMM dd yyyy HH:mm:ss.SSS`` in UTC with the matching ``devTimeFormat``.
"""

from __future__ import annotations

from datetime import UTC

from agent.codecs.base import TruncateHook
from agent.codecs.config import LeefCodecConfig
from agent.codecs.flat import IP, PATH, STR, Default, Mapper, Part, compile_entries, fit
from agent.codecs.paths import (
    FILE_HASH,
    FILE_NAME,
    FILE_PATH,
    HOST_NAME,
    IP_ADDRESS,
    URL,
    USER_DOMAIN,
    USER_NAME,
    as_text,
    compile_path,
    lookup,
)
from agent.codecs.text import clean, cut, parse_time
from agent.model import Alert

_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
_TIME_KIND = 100
DEV_TIME_FORMAT = "MMM dd yyyy HH:mm:ss.SSS z"


DEFAULT_MAPPING: tuple[Default, ...] = (
    ("devTime", "lastUpdateDateTime", "devTimeFormat", DEV_TIME_FORMAT),
    ("cat", "category", "", ""),
    ("alertId", "id", "", ""),
    ("title", "title", "", ""),
    ("description", "description", "", ""),
    ("usrName", USER_NAME, "", ""),
    ("domain", USER_DOMAIN, "", ""),
    ("identHostName", HOST_NAME, "", ""),
    ("src", IP_ADDRESS, "", ""),
    ("url", URL, "", ""),
    ("fileName", FILE_NAME, "", ""),
    ("filePath", FILE_PATH, "", ""),
    ("fileHash", FILE_HASH, "", ""),
    ("status", "status", "", ""),
    ("classification", "classification", "", ""),
    ("serviceSource", "serviceSource", "", ""),
    ("detectionSource", "detectionSource", "", ""),
    ("incidentId", "incidentId", "", ""),
    ("tenantId", "tenantId", "", ""),
    ("mitreTechniques", "mitreTechniques", "", ""),
    ("alertWebUrl", "alertWebUrl", "", ""),
    # Only on a version the agent's own write-back produced (agent.writeback.loop).
    ("siemAgentOrigin", "siemAgent.origin", "", ""),
    ("siemAgentRequestId", "siemAgent.requestId", "", ""),
)
_LIMITS = {"description": 4000, "title": 1023}
_KINDS = {"devTime": _TIME_KIND, "src": IP, "dst": IP, "filePath": PATH}


def leef_time(value: object) -> str | None:
    """An ISO-8601 timestamp as ``MMM dd yyyy HH:mm:ss.SSS UTC``."""
    dt = parse_time(value) if isinstance(value, str) else None
    if dt is None:
        return None
    dt = dt.astimezone(UTC)
    return f"{_MONTHS[dt.month - 1]} {dt.day:02d} {dt:%Y %H:%M:%S}.{dt.microsecond // 1000:03d} UTC"


class LeefSerializer:
    """Encodes an alerts_v2 alert as one LEEF 2.0 message (no syslog header, no trailing newline)."""

    def __init__(self, config: LeefCodecConfig, on_truncate: TruncateHook | None = None) -> None:
        self.config = config
        self._hook = on_truncate
        self._max = config.max_message_bytes
        delim = config.delimiter
        self._delim = chr(int(delim[-2:], 16)) if len(delim) > 1 else delim
        vendor, product, version = (_header(t) for t in (config.vendor, config.product, config.version))
        self._prefix = f"LEEF:2.0|{vendor}|{product}|{version}|"
        self._event_id = compile_path(config.event_id)
        self._severity = {k: str(v) for k, v in config.severity_map.items()}
        self._default_severity = self._severity.get("unknown", "1")
        entries = compile_entries(
            DEFAULT_MAPPING,
            config.default_mapping,
            config.mapping,
            config.constants,
            lambda k: _KINDS.get(k, STR),
            lambda k: _LIMITS.get(k, 1023),
        )
        self._mapper = Mapper(entries, on_truncate, keep_newlines=False, converters={_TIME_KIND: leef_time})
        self._delim_field = delim

    def encode(self, alert: Alert) -> bytes:
        """Return the LEEF message; raises ``EncodeError`` only if it cannot fit ``max_message_bytes``."""
        return self.encode_within(alert, self._max)

    def encode_within(self, alert: Alert, max_bytes: int) -> bytes:
        """Return the LEEF message, truncating the biggest fields so it is at most ``max_bytes``."""
        event_id = clean(cut(as_text(lookup(alert, self._event_id, None)) or "", 255, "eventId", self._hook))
        graph_severity = alert.get("severity")
        sev = (
            self._severity.get(graph_severity, self._default_severity)
            if isinstance(graph_severity, str)
            else self._default_severity
        )
        keys, values = self._mapper.run(alert)
        pairs = [("sev=", sev), *zip(keys, values, strict=True)]
        d = self._delim
        body = d.join([k + self._value(v) for k, v in pairs])
        out = f"{self._prefix}{_header(event_id)}|{self._delim_field}|{body}".encode()
        if len(out) <= max_bytes:
            return out
        parts = [Part(k[:-1], v, self._value, len(k) + 1) for k, v in pairs]
        head = Part("eventId", event_id, _header, 0, required=True)
        fit([head, *parts], len(self._prefix.encode()) + len(self._delim_field) + 2, max_bytes, self._hook)
        body = d.join([f"{p.name}={self._value(p.text)}" for p in parts if p.text is not None])
        return f"{self._prefix}{_header(head.text or '')}|{self._delim_field}|{body}".encode()

    def _value(self, text: str) -> str:
        return text.replace(self._delim, "\ufffd") if self._delim in text else text


def _header(text: str) -> str:
    text = clean(text)
    if "\\" in text or "|" in text:
        return text.replace("\\", "\\\\").replace("|", "\\|")
    return text
