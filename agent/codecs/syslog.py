"""Syslog envelopes: RFC 5424 and RFC 3164 around a CEF, LEEF, JSON or ECS MSG part.

The serializer writes the whole syslog message without framing (the transport's framer adds
octet counting or LF). Header fields are PRINTUSASCII: any other character becomes ``_``, and
an empty field is the NILVALUE ``-``. TIMESTAMP is the alert's own time (``timestamp_field``), in
UTC; serializers read no clock, except RFC 3164, which has no NILVALUE, for an alert without any
parsable timestamp. PRI = facility * 8 + the severity mapped from Graph's ``severity``.
"""

from __future__ import annotations

import re
import socket
from datetime import UTC, datetime

from agent.codecs.base import Serializer, TruncateHook
from agent.codecs.config import FACILITIES, Syslog3164CodecConfig, Syslog5424CodecConfig
from agent.codecs.flat import Part, fit
from agent.codecs.msg import MSG_CODECS
from agent.codecs.paths import as_text, compile_path, lookup
from agent.codecs.text import clean, cut, parse_time, utc_fraction
from agent.model import Alert

_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
_NOT_PRINTUSASCII = re.compile(r"[^!-~]")
_UTC_Z = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.(\d+))?Z")
_UTC_HEAD = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", re.ASCII)
#: Longest SD PARAM-VALUE written, in characters.
SD_VALUE_MAX = 1024
BOM = b"\xef\xbb\xbf"


def header_field(text: str | None, limit: int) -> str:
    """A PRINTUSASCII header field of at most ``limit`` characters, ``-`` when empty."""
    text = _NOT_PRINTUSASCII.sub("_", text or "")[:limit]
    return text or "-"


def escape_sd(text: str) -> str:
    """Escape an SD PARAM-VALUE: ``\\``, ``"`` and ``]`` get a backslash (RFC 5424 §6.3.3)."""
    if "\\" in text or '"' in text or "]" in text:
        return text.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")
    return text


def rfc3339(value: object) -> str | None:
    """An ISO-8601 timestamp as RFC 5424 TIMESTAMP: UTC, ``Z``, at most 6 fractional digits."""
    if not isinstance(value, str):
        return None
    dt = parse_time(value)
    if dt is None:
        return None
    m = _UTC_Z.fullmatch(value)
    if m is not None:  # already UTC: keep the digits Graph sent, cut to microseconds
        frac = m.group(1)
        return value if frac is None or len(frac) <= 6 else value[:26] + "Z"
    dt = dt.astimezone(UTC)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{dt.microsecond:06d}Z"


class _Envelope:
    def __init__(
        self, config: Syslog5424CodecConfig | Syslog3164CodecConfig, hook: TruncateHook | None
    ) -> None:
        self._hook = hook
        self._max = config.max_message_bytes
        self._msg: Serializer = MSG_CODECS[config.msg.type](config.msg, hook)
        self._time = compile_path(config.timestamp_field)
        facility = FACILITIES[config.facility] if isinstance(config.facility, str) else config.facility
        self._pri = {k: facility * 8 + v for k, v in config.severity_map.items()}
        self._default_pri = facility * 8 + config.severity_map.get("unknown", 5)
        self._hostname = config.hostname if config.hostname is not None else socket.gethostname()

    def _priority(self, alert: Alert) -> int:
        severity = alert.get("severity")
        return self._pri.get(severity, self._default_pri) if isinstance(severity, str) else self._default_pri

    def encode(self, alert: Alert) -> bytes:
        """Return the syslog message; raises ``EncodeError`` only if it cannot fit ``max_message_bytes``."""
        return self.encode_within(alert, self._max)

    def encode_within(self, alert: Alert, max_bytes: int) -> bytes:
        head = self._head(alert, max_bytes)
        return head + self._msg.encode_within(alert, max_bytes - len(head))

    def _head(self, alert: Alert, max_bytes: int) -> bytes:
        raise NotImplementedError


class Rfc3339Cache:
    """:func:`rfc3339` for Graph's ``YYYY-MM-DDTHH:MM:SS[.digits]Z``: the second checked once, cached.

    Bounded (emptied at ``size`` entries) and owned by one serializer; other forms go to :func:`rfc3339`.
    """

    def __init__(self, size: int = 4096) -> None:
        self._valid: dict[str, bool] = {}
        self._size = size

    def __call__(self, value: object) -> str | None:
        if isinstance(value, str):
            digits = utc_fraction(value)
            if digits is not None:
                head = value[:19]
                valid = self._valid.get(head)
                if valid is None:
                    valid = bool(_UTC_HEAD.fullmatch(head)) and parse_time(head + "Z") is not None
                    if len(self._valid) >= self._size:
                        self._valid.clear()
                    self._valid[head] = valid
                if valid:
                    return value if len(digits) <= 6 else value[:26] + "Z"
        return rfc3339(value)


class Syslog5424Serializer(_Envelope):
    """``<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA MSG`` (RFC 5424)."""

    def __init__(self, config: Syslog5424CodecConfig, on_truncate: TruncateHook | None = None) -> None:
        super().__init__(config, on_truncate)
        self.config = config
        fields = (
            header_field(self._hostname, 255),
            header_field(config.app_name, 48),
            header_field(config.procid, 128),
            header_field(config.msgid, 32),
        )
        self._fields = " " + " ".join(fields) + " "
        self._sd_id = f"{config.sd_id}@{config.pen}"
        self._params = (
            [(name, compile_path(path)) for name, path in config.sd_params.items()]
            if config.structured_data
            else []
        )
        self._bom = BOM if config.bom else b""
        self._rfc3339 = Rfc3339Cache()
        first = self._time[0]
        self._time_key = first.keys[0] if first.evidence is None and len(first.keys) == 1 else None
        plain = all(p[0].evidence is None and len(p[0].keys) == 1 and len(p) == 1 for _, p in self._params)
        #: ``(' name="', top-level key)`` when every SD param is one top-level property: the fast path.
        self._plain_params = [(f' {n}="', p[0].keys[0]) for n, p in self._params] if plain else None

    def _structured_data_fast(self, alert: Alert, max_bytes: int) -> str | None:
        """SD when every value is a short printable string needing no escape; else ``None`` (no hook)."""
        assert self._plain_params is not None
        parts: list[str] = []
        get = alert.get
        for start, key in self._plain_params:
            x = get(key)
            if x.__class__ is str and x:
                parts += (start, x, '"')
            elif not (x is None or x == "" or x == []):  # noqa: PLR1714
                return None
        if not parts:
            return "-"
        values = "".join(parts[1::3])
        if max(map(len, parts[1::3])) > SD_VALUE_MAX or not values.isprintable():
            return None
        if "\\" in values or '"' in values or "]" in values:
            return None
        sd = "".join(parts)
        return None if len(sd) * 16 > max_bytes else f"[{self._sd_id}{sd}]"

    def _structured_data(self, alert: Alert, max_bytes: int) -> str:
        if self._plain_params is not None:
            sd = self._structured_data_fast(alert, max_bytes)
            if sd is not None:
                return sd
        values = []
        for name, path in self._params:
            text = as_text(lookup(alert, path, None))
            if text is not None:
                values.append((name, clean(cut(text, SD_VALUE_MAX, f"sd.{name}", self._hook))))
        if not values:
            return "-"
        sd = "".join([f' {name}="{escape_sd(value)}"' for name, value in values])
        # SD gets at most a quarter of the message; the char count bounds the bytes (<= 4 per char).
        if len(sd) * 16 > max_bytes and len(sd.encode()) + len(self._sd_id) + 2 > max_bytes // 4:
            parts = [Part(f"sd.{n}", v, escape_sd, len(n) + 4, required=True) for n, v in values]
            fit(parts, len(self._sd_id) + 2, max_bytes // 4, self._hook)
            sd = "".join([f' {p.name[3:]}="{escape_sd(p.text or "")}"' for p in parts])
        return f"[{self._sd_id}{sd}]"

    def _head(self, alert: Alert, max_bytes: int) -> bytes:
        value = alert.get(self._time_key) if self._time_key is not None else None
        if value.__class__ is not str or not value:  # lookup() moves on to the next alternative
            value = lookup(alert, self._time, None)
        timestamp = self._rfc3339(value) or "-"
        sd = self._structured_data(alert, max_bytes)
        return f"<{self._priority(alert)}>1 {timestamp}{self._fields}{sd} ".encode() + self._bom


class Syslog3164Serializer(_Envelope):
    """``<PRI>Mmm dd hh:mm:ss HOSTNAME TAG[pid]: MSG`` (RFC 3164), time in UTC."""

    def __init__(self, config: Syslog3164CodecConfig, on_truncate: TruncateHook | None = None) -> None:
        super().__init__(config, on_truncate)
        self.config = config
        pid = f"[{config.pid}]" if config.pid is not None else ""
        self._rest = f" {header_field(self._hostname, 255)} {config.tag}{pid}: "

    def _head(self, alert: Alert, max_bytes: int) -> bytes:
        value = lookup(alert, self._time, None)
        dt = parse_time(value) if isinstance(value, str) else None
        dt = (dt or datetime.now(UTC)).astimezone(UTC)
        stamp = f"{_MONTHS[dt.month - 1]} {dt.day:2d} {dt:%H:%M:%S}"
        return f"<{self._priority(alert)}>{stamp}{self._rest}".encode()
