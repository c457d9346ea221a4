"""Codec configuration: a table with a ``type`` key selects the serializer.

Syslog envelopes nest the codec of their MSG part under ``msg`` (same models, same ``type`` tags),
e.g. ``codec = { type = "syslog5424", msg = { type = "cef" } }`` is CEF over RFC 5424. Inside an
envelope the envelope's ``max_message_bytes`` bounds the whole message; the inner one is ignored.
Every model forbids unknown keys. Reference with examples: docs/codecs.md.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agent.codecs.paths import compile_path

#: Receivers cap a message at 64 KiB (rsyslog ``maxMessageSize``, syslog-ng ``log-msg-size``).
DEFAULT_MAX_MESSAGE_BYTES = 60_000

FACILITIES: dict[str, int] = {
    name: code
    for code, name in enumerate(
        "kern user mail daemon auth syslog lpr news uucp cron authpriv ftp ntp audit alert clock".split()  # noqa: SIM905
        + [f"local{i}" for i in range(8)]
    )
}

_CEF_KEY = re.compile(r"^[A-Za-z0-9]{1,63}$")
_LEEF_KEY = re.compile(r"^[A-Za-z0-9_.\-]{1,63}$")
_SD_NAME = re.compile(r"^[!#-<>-\\^-~]{1,32}$")  # PRINTUSASCII except '=', ' ', ']', '"'


class _Codec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Upper bound of one message in bytes; the biggest fields are truncated (and counted) to fit.
    max_message_bytes: int = Field(default=DEFAULT_MAX_MESSAGE_BYTES, ge=2048, le=1_048_576)


def _check_paths(value: dict[str, str], key_re: re.Pattern[str], what: str) -> dict[str, str]:
    for key, path in value.items():
        if not key_re.match(key):
            raise ValueError(f"{what} key {key!r} is not allowed")
        if path:  # "" removes a default entry
            compile_path(path)
    return value


class JsonCodecConfig(_Codec):
    """The alert exactly as Graph sent it, one JSON object per message."""

    type: Literal["json"] = "json"


#: Elastic Security's severity scale (its rules map 21/47/73/99 to low/medium/high/critical). Graph's
#: ``unknown`` (and any value not listed) is 47, the promotion rules' own default, not "low".
ECS_SEVERITY = {"unknown": 47, "informational": 21, "low": 21, "medium": 47, "high": 73}
_DATA_STREAM_PART = r"^[a-z0-9][a-z0-9_.]{0,99}$"  # lowercase, no '-' (it separates the parts)


class EcsCodecConfig(_Codec):
    """The alert mapped to Elastic Common Schema, the original kept under ``microsoft.graph.alert``."""

    type: Literal["ecs"] = "ecs"
    #: Graph severity -> ``event.severity`` and ``event.risk_score`` (Elastic Security: 21 low,
    #: 47 medium, 73 high, 99 critical); a severity not listed takes the ``unknown`` entry.
    severity_map: dict[str, int] = Field(default_factory=lambda: dict(ECS_SEVERITY))
    #: Keep the whole Graph alert under ``microsoft.graph.alert``.
    include_original: bool = True
    #: ``data_stream.dataset`` and ``event.dataset``; a data stream index must be
    #: ``logs-<dataset>-<namespace>`` (the elasticsearch sink checks it).
    dataset: str = Field(default="microsoft_graph.alert", pattern=_DATA_STREAM_PART)
    #: ``data_stream.namespace`` (e.g. ``default``, ``production``, a tenant's short name).
    namespace: str = Field(default="default", pattern=_DATA_STREAM_PART)


class _Mapped(_Codec):
    #: Extra or overriding ``key = "field path"`` entries; ``""`` removes a default key.
    mapping: dict[str, str] = Field(default_factory=dict)
    #: Constant ``key = "value"`` entries written after the mapped ones (e.g. ``cs1Label``).
    constants: dict[str, str] = Field(default_factory=dict)
    #: Start from the documented default mapping (``false``: only ``mapping`` + ``constants``).
    default_mapping: bool = True


class CefCodecConfig(_Mapped):
    """ArcSight CEF:0."""

    type: Literal["cef"] = "cef"
    #: Device Vendor, CEF header field 2 (at most 63 characters).
    device_vendor: str = Field(default="Microsoft", max_length=63)
    #: Device Product, CEF header field 3 (at most 63 characters).
    device_product: str = Field(default="Graph Security", max_length=63)
    #: Device Version, CEF header field 4 (at most 31 characters).
    device_version: str = Field(default="alerts_v2", max_length=31)
    #: Field path of the Device Event Class ID (header field 5).
    event_class_id: str = "detectorId | alertPolicyId | category"
    #: Field path of the Name (header field 6).
    name: str = "title"
    #: Graph severity -> CEF severity 0..10 (0-3 Low, 4-6 Medium, 7-8 High, 9-10 Very-High).
    severity_map: dict[str, Annotated[int, Field(ge=0, le=10)]] = Field(
        default_factory=lambda: {"unknown": 0, "informational": 1, "low": 3, "medium": 5, "high": 8}
    )

    @field_validator("mapping", "constants")
    @classmethod
    def _keys(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_paths(value, _CEF_KEY, "CEF extension")

    @field_validator("event_class_id", "name")
    @classmethod
    def _path(cls, value: str) -> str:
        compile_path(value)
        return value


class LeefCodecConfig(_Mapped):
    """IBM QRadar LEEF 2.0."""

    type: Literal["leef"] = "leef"
    #: Vendor, LEEF header field 2 (at most 63 characters).
    vendor: str = Field(default="Microsoft", max_length=63)
    #: Product, LEEF header field 3 (at most 63 characters).
    product: str = Field(default="Graph Security", max_length=63)
    #: Version, LEEF header field 4 (at most 31 characters).
    version: str = Field(default="alerts_v2", max_length=31)
    #: Field path of the EventID header field. The default, the alert's category (a MITRE tactic or
    #: Malware, SuspiciousActivity, ...), is a small set QRadar can map to QIDs (deploy/qradar/qid-map.csv);
    #: ``detectorId`` would give one EventID per detection rule (thousands of GUIDs).
    event_id: str = "category | serviceSource"
    #: Attribute delimiter: one printable character, or ``xHH`` / ``0xHH`` (e.g. ``x09`` for TAB).
    delimiter: str = "^"
    #: Graph severity -> LEEF ``sev`` 1..10.
    severity_map: dict[str, Annotated[int, Field(ge=1, le=10)]] = Field(
        default_factory=lambda: {"unknown": 1, "informational": 1, "low": 3, "medium": 5, "high": 8}
    )

    @field_validator("mapping", "constants")
    @classmethod
    def _keys(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_paths(value, _LEEF_KEY, "LEEF attribute")

    @field_validator("event_id")
    @classmethod
    def _path(cls, value: str) -> str:
        compile_path(value)
        return value

    @field_validator("delimiter")
    @classmethod
    def _delimiter(cls, value: str) -> str:
        if re.fullmatch(r"(0x|x)[0-9A-Fa-f]{2}", value):
            char = chr(int(value[-2:], 16))
            if char in "=|\\\n\r" or not (char == "\t" or char.isprintable()) or char.isalnum():
                raise ValueError(f"delimiter {value!r} cannot separate attributes")
        elif len(value) != 1 or value in "=|\\ " or value.isalnum() or not value.isprintable():
            raise ValueError(
                "delimiter must be one printable non-alphanumeric character"
                " other than = | \\ or space, or xHH"
            )
        return value


MsgCodecConfig = Annotated[
    JsonCodecConfig | EcsCodecConfig | CefCodecConfig | LeefCodecConfig, Field(discriminator="type")
]

_SYSLOG_SEVERITY = {"unknown": 5, "informational": 6, "low": 4, "medium": 3, "high": 2}


class _Syslog(_Codec):
    #: The codec of the MSG part.
    msg: MsgCodecConfig = Field(default_factory=CefCodecConfig)
    #: Facility name (``local0``, ``auth``, ...) or number 0..23.
    facility: str | Annotated[int, Field(ge=0, le=23)] = "local0"
    #: Graph severity -> syslog severity 0 (emerg) .. 7 (debug).
    severity_map: dict[str, Annotated[int, Field(ge=0, le=7)]] = Field(
        default_factory=lambda: dict(_SYSLOG_SEVERITY)
    )
    #: HOSTNAME; ``None`` = this machine's name.
    hostname: str | None = None
    #: Field path of the TIMESTAMP.
    timestamp_field: str = "lastUpdateDateTime | createdDateTime"

    @field_validator("facility")
    @classmethod
    def _facility(cls, value: str | int) -> str | int:
        if isinstance(value, str) and value not in FACILITIES:
            raise ValueError(f"unknown facility {value!r}; one of {', '.join(FACILITIES)} or 0..23")
        return value

    @field_validator("timestamp_field")
    @classmethod
    def _path(cls, value: str) -> str:
        compile_path(value)
        return value


class Syslog5424CodecConfig(_Syslog):
    """RFC 5424 syslog envelope around a CEF, LEEF, JSON or ECS message."""

    type: Literal["syslog5424"] = "syslog5424"
    #: APP-NAME header field: 1..48 printable ASCII characters, no space.
    app_name: str = Field(default="siem-agent", pattern=r"^[!-~]{1,48}$")
    #: PROCID header field: 1..128 printable ASCII characters, no space (``-``: none).
    procid: str = Field(default="-", pattern=r"^[!-~]{1,128}$")
    #: MSGID header field: 1..32 printable ASCII characters, no space.
    msgid: str = Field(default="alert", pattern=r"^[!-~]{1,32}$")
    #: Write STRUCTURED-DATA ``[sd_id@pen name="value" ...]`` from ``sd_params``; ``false`` writes ``-``.
    structured_data: bool = True
    #: Name part of the SD-ID, written as ``<sd_id>@<pen>`` (no ``=``, space, ``]``, ``"`` or ``@``).
    sd_id: str = Field(default="alert", pattern=r"^[!#-<>?A-\\^-~]{1,22}$")  # SD-NAME without '@'
    #: IANA Private Enterprise Number; 32473 is the RFC 5612 documentation number: get your own.
    pen: int = Field(default=32473, ge=1)
    #: SD PARAM-NAME -> field path.
    sd_params: dict[str, str] = Field(
        default_factory=lambda: {
            "id": "id",
            "tenantId": "tenantId",
            "incidentId": "incidentId",
            "severity": "severity",
            "status": "status",
            "serviceSource": "serviceSource",
            "lastUpdateDateTime": "lastUpdateDateTime",
        }
    )
    #: Prefix MSG with a UTF-8 BOM (RFC 5424 MSG-UTF8). Off: many CEF parsers expect ``CEF:`` first.
    bom: bool = False

    @field_validator("sd_params")
    @classmethod
    def _params(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_paths(value, _SD_NAME, "SD PARAM-NAME")


class Syslog3164CodecConfig(_Syslog):
    """RFC 3164 (BSD) syslog envelope around a CEF, LEEF, JSON or ECS message."""

    type: Literal["syslog3164"] = "syslog3164"
    #: TAG: 1..32 alphanumerics (RFC 3164 §4.1.3).
    tag: str = Field(default="siemagent", pattern=r"^[A-Za-z0-9]{1,32}$")
    #: Written as ``TAG[pid]:`` when set.
    pid: int | None = Field(default=None, ge=0)


CodecConfig = Annotated[
    JsonCodecConfig
    | EcsCodecConfig
    | CefCodecConfig
    | LeefCodecConfig
    | Syslog5424CodecConfig
    | Syslog3164CodecConfig,
    Field(discriminator="type"),
]
