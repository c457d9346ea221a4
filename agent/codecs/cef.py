"""ArcSight CEF:0 serializer (CEF implementation standard, rev. 25).

``CEF:0|Vendor|Product|Version|Device Event Class ID|Name|Severity|key=value key=value``

* Header fields escape ``\\`` and ``|`` only; CR/LF never reach the header (they become spaces).
* Extension values escape ``\\`` (first), ``=``, LF as ``\\n`` and CR as ``\\r``; a raw ``|`` is legal.
  Keys are alphanumeric, values have trailing spaces trimmed, no space follows the 7th ``|``.
* The text policy of :mod:`agent.codecs.text` applies first (no NUL or other control char raw).
* Timestamps (``rt``, ``start``, ``end``, ...) are epoch milliseconds; IPv4 keys only take IPv4,
  ``c6a*`` only IPv6; integer keys only integers. A value that does not fit its type is omitted.
* Per-key length limits from the standard; ``externalId`` (40) is omitted, never cut, when too long.
The default mapping is the table in docs/codecs.md.
"""

from __future__ import annotations

from agent.codecs.base import TruncateHook
from agent.codecs.config import CefCodecConfig
from agent.codecs.extract import KEY_END, PAIR, FastExtractor, compile_fast
from agent.codecs.flat import (
    INT,
    IPV4,
    IPV6,
    PATH,
    STR,
    TIME,
    Converter,
    Default,
    Entry,
    Mapper,
    Part,
    compile_entries,
    fit,
)
from agent.codecs.paths import (
    DEVICE,
    FILE,
    FILE_HASH,
    FILE_NAME,
    FILE_PATH,
    HOST_NAME,
    IP_ADDRESS,
    PROCESS,
    URL,
    USER,
    USER_DOMAIN,
    USER_NAME,
    Path,
    as_text,
    compile_path,
    evidence_index,
    lookup,
)
from agent.codecs.text import EpochMillis, clean, cut
from agent.model import Alert

DEFAULT_MAPPING: tuple[Default, ...] = (
    ("rt", "lastUpdateDateTime", "", ""),
    ("start", "firstActivityDateTime", "", ""),
    ("end", "lastActivityDateTime", "", ""),
    ("externalId", "id", "", ""),
    ("cat", "category", "", ""),
    ("msg", "description", "", ""),
    ("shost", HOST_NAME, "", ""),
    ("sourceDnsDomain", f"{DEVICE}.dnsDomain", "", ""),
    ("deviceExternalId", f"{DEVICE}.mdeDeviceId", "", ""),
    ("src", IP_ADDRESS, "", ""),
    ("c6a1", IP_ADDRESS, "c6a1Label", "ipv6Address"),
    ("suser", USER_NAME, "", ""),
    ("sntdom", USER_DOMAIN, "", ""),
    ("suid", f"{USER}.userPrincipalName | {USER}.azureAdUserId | {USER}.userSid", "", ""),
    ("fname", FILE_NAME, "", ""),
    ("filePath", FILE_PATH, "", ""),
    ("fileHash", FILE_HASH, "", ""),
    ("fsize", f"{FILE}.fileSize", "", ""),
    ("sproc", f"{PROCESS}.imageFile.fileName", "", ""),
    ("spid", f"{PROCESS}.processId", "", ""),
    ("request", URL, "", ""),
    ("cs1", "detectionSource", "cs1Label", "detectionSource"),
    ("cs2", "status", "cs2Label", "status"),
    ("cs3", "tenantId", "cs3Label", "tenantId"),
    ("cs4", "incidentId", "cs4Label", "incidentId"),
    ("cs5", "mitreTechniques", "cs5Label", "mitreTechniques"),
    ("cs6", "alertWebUrl", "cs6Label", "alertWebUrl"),
    ("flexString1", "serviceSource", "flexString1Label", "serviceSource"),
    ("flexString2", "classification", "flexString2Label", "classification"),
    # Only on a version the agent's own write-back produced (agent.writeback.loop): siem-agent-writeback.
    ("act", "siemAgent.origin", "", ""),
)

_KINDS: dict[str, int] = (
    dict.fromkeys(
        [
            "rt",
            "start",
            "end",
            "art",
            "deviceCustomDate1",
            "deviceCustomDate2",
            "fileCreateTime",
            "fileModificationTime",
            "oldFileCreateTime",
            "oldFileModificationTime",
            "flexDate1",
        ],
        TIME,
    )
    | dict.fromkeys(["src", "dst", "dvc", "sourceTranslatedAddress", "destinationTranslatedAddress"], IPV4)
    | dict.fromkeys(["c6a1", "c6a2", "c6a3", "c6a4"], IPV6)
    | {"filePath": PATH, "oldFilePath": PATH}
    | dict.fromkeys(
        [
            "spt",
            "dpt",
            "cnt",
            "fsize",
            "oldFileSize",
            "in",
            "out",
            "spid",
            "dpid",
            "dvcpid",
            "cn1",
            "cn2",
            "cn3",
            "type",
            "sourceTranslatedPort",
            "destinationTranslatedPort",
            "flexNumber1",
            "flexNumber2",
        ],
        INT,
    )
)
_LIMITS: dict[str, int] = (
    dict.fromkeys(["act", "outcome"], 63)
    | {"app": 31, "externalId": 40, "dvchost": 100, "flexString1Label": 128, "flexString2Label": 128}
    | dict.fromkeys(
        [
            "sntdom",
            "dntdom",
            "sourceDnsDomain",
            "destinationDnsDomain",
            "deviceDnsDomain",
            "deviceNtDomain",
            "fileHash",
            "oldFileHash",
            "deviceExternalId",
        ],
        255,
    )
    | dict.fromkeys([f"cs{i}" for i in range(1, 7)], 4000)
)
_NAME_MAX = 512
_CLASS_MAX = 1023
#: Every ASCII control character but LF and CR (which extension values keep, escaped), and DEL.
_CONTROLS = bytes([*range(0x0A), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])
#: Turns the fast path's stand-ins back into ``=`` and the space between pairs.
_UNMARK = bytes.maketrans(f"{KEY_END}{PAIR}".encode(), b"= ")
#: A value ending in a space, just before the next key.
_TRAILING = f" {PAIR}".encode()


def escape_value(text: str) -> str:
    """Escape a CEF extension value (``\\`` first, then ``=``, LF, CR)."""
    # str.replace is memchr-fast; str.translate with a dict costs a lookup per character.
    if "\\" in text:
        text = text.replace("\\", "\\\\")
    if "=" in text:
        text = text.replace("=", "\\=")
    if "\n" in text:
        text = text.replace("\n", "\\n")
    if "\r" in text:
        text = text.replace("\r", "\\r")
    return text


def escape_header(text: str) -> str:
    """Escape a CEF header field (``\\`` and ``|``)."""
    if "\\" in text:
        text = text.replace("\\", "\\\\")
    if "|" in text:
        text = text.replace("|", "\\|")
    return text


def _header_text(text: str, limit: int, name: str, hook: TruncateHook | None) -> str:
    return clean(cut(text, limit, name, hook))


class CefSerializer:
    """Encodes an alerts_v2 alert as one CEF:0 message (no syslog header, no trailing newline)."""

    def __init__(self, config: CefCodecConfig, on_truncate: TruncateHook | None = None) -> None:
        self.config = config
        self._hook = on_truncate
        self._max = config.max_message_bytes
        vendor, product, version = (
            escape_header(clean(text))
            for text in (config.device_vendor, config.device_product, config.device_version)
        )
        self._prefix = f"CEF:0|{vendor}|{product}|{version}|"
        self._class_id = compile_path(config.event_class_id)
        self._name = compile_path(config.name)
        self._header_index = any(a.evidence for a in self._class_id + self._name)
        self._severity = {k: str(v) for k, v in config.severity_map.items()}
        self._default_severity = self._severity.get("unknown", "0")
        entries = compile_entries(
            DEFAULT_MAPPING,
            config.default_mapping,
            config.mapping,
            config.constants,
            lambda k: _KINDS.get(k, STR),
            lambda k: _LIMITS.get(k, 1023),
            whole=frozenset({"externalId"}),
        )
        self._mapper = Mapper(entries, on_truncate, keep_newlines=True, converters={TIME: EpochMillis()})
        self._fast = _fast_extractor(entries, (self._class_id, self._name), self._mapper.converters)

    def encode(self, alert: Alert) -> bytes:
        """Return the CEF message; raises ``EncodeError`` only if it cannot fit ``max_message_bytes``."""
        return self.encode_within(alert, self._max)

    def encode_within(self, alert: Alert, max_bytes: int) -> bytes:
        """Return the CEF message, truncating the biggest fields so it is at most ``max_bytes``."""
        out = self._encode_fast(alert) if self._fast is not None else None
        if out is not None and len(out) <= max_bytes:
            return out
        return self.encode_reference(alert, max_bytes)

    def _encode_fast(self, alert: Alert) -> bytes | None:
        """The message when nothing needs cleaning, cutting or fitting, else ``None`` (no hook called).

        All values are joined once: one C-level pass checks for control characters, the escapes run
        over the whole extension, and one ``bytes.translate`` restores the ``=`` and spaces that the
        keys carry as stand-ins (the check guarantees no value contains a stand-in).
        """
        got = self._fast(alert)  # type: ignore[misc]
        if got is None:
            return None
        pairs, values, (class_id, name) = got
        if values.isascii():
            raw = values.encode()
            if len(raw.translate(None, _CONTROLS)) != len(raw):
                return None
        elif not values.isprintable():
            return None
        if len(class_id) > _CLASS_MAX or len(name) > _NAME_MAX or not (class_id + name).isprintable():
            return None
        # Bytes from here: memchr-fast searches, and UTF-8 never hides an ASCII byte in a sequence.
        ext = pairs.encode()
        if _TRAILING in ext or ext[-1:] == b" ":  # a value with trailing spaces: the general path trims
            return None
        if b"\\" in ext:
            ext = ext.replace(b"\\", b"\\\\")
        if b"=" in ext:
            ext = ext.replace(b"=", b"\\=")
        if b"\n" in ext:
            ext = ext.replace(b"\n", b"\\n")
        if b"\r" in ext:
            ext = ext.replace(b"\r", b"\\r")
        severity = alert.get("severity")
        severity = (
            self._severity.get(severity, self._default_severity)
            if isinstance(severity, str)
            else self._default_severity
        )
        head = f"{self._prefix}{escape_header(class_id)}|{escape_header(name)}|{severity}|".encode()
        return head + ext[1:].translate(_UNMARK)

    def encode_reference(self, alert: Alert, max_bytes: int) -> bytes:
        """The general path (cleaning, cutting, fitting); the fast path must equal it where it applies."""
        hook = self._hook
        index = evidence_index(alert) if self._header_index else None
        class_id = _header_text(
            _text(lookup(alert, self._class_id, index)), _CLASS_MAX, "deviceEventClassId", hook
        )
        name = _header_text(_text(lookup(alert, self._name, index)), _NAME_MAX, "name", hook)
        graph_severity = alert.get("severity")
        severity = (
            self._severity.get(graph_severity, self._default_severity)
            if isinstance(graph_severity, str)
            else self._default_severity
        )
        keys, values = self._mapper.run(alert)
        if values:
            joined = "\x00".join(values)
            escaped = escape_value(joined)
            if escaped is not joined:
                values = escaped.split("\x00")
        ext = " ".join(map(str.__add__, keys, values))
        out = f"{self._prefix}{escape_header(class_id)}|{escape_header(name)}|{severity}|{ext}".encode()
        if len(out) <= max_bytes:
            return out
        keys, values = self._mapper.run(alert)  # unescaped again: fitting works on raw text
        return self._fit(class_id, name, severity, list(zip(keys, values, strict=True)), max_bytes)

    def _fit(
        self, class_id: str, name: str, severity: str, pairs: list[tuple[str, str]], max_bytes: int
    ) -> bytes:
        head = [
            Part("deviceEventClassId", class_id, escape_header, 1, required=True),
            Part("name", name, escape_header, 1, required=True),
        ]
        ext = [Part(k[:-1], v, escape_value, len(k) + 1) for k, v in pairs]
        fixed = len(self._prefix.encode()) + len(severity) + 1
        fit(head + ext, fixed, max_bytes, self._hook)
        body = " ".join([f"{p.name}={escape_value(p.text)}" for p in ext if p.text is not None])
        header = f"{escape_header(head[0].text or '')}|{escape_header(head[1].text or '')}|"
        return f"{self._prefix}{header}{severity}|{body}".encode()


def _text(value: object) -> str:
    return as_text(value) or ""


def _plain(text: str) -> bool:
    """Whether ``text`` passes the value checks unchanged (so it can be baked into the fast path)."""
    return bool(text) and text.isprintable() and escape_value(text) == text and not text.endswith(" ")


def _fast_extractor(
    entries: tuple[Entry, ...], headers: tuple[tuple[Path, ...], ...], converters: dict[int, Converter]
) -> FastExtractor | None:
    """The fast extractor, or ``None`` when a constant or label would need the general path."""
    if not all(_plain(e.constant) for e in entries if e.constant is not None):
        return None
    if not all(_plain(e.label[1]) for e in entries if e.label is not None):
        return None
    return compile_fast(entries, converters, headers)
