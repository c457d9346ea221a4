"""Codecs: serializers (alert -> message bytes) and framers (message -> stream bytes).

``CODECS`` is the closed registry from the config ``type`` tag to the serializer class; a test checks
that its keys are exactly the tags of :data:`~agent.codecs.config.CodecConfig`.
"""

from __future__ import annotations

from typing import Any, Protocol

from agent.codecs.base import Framer, Serializer, TruncateHook
from agent.codecs.cef import CefSerializer
from agent.codecs.config import CodecConfig
from agent.codecs.ecs import EcsSerializer
from agent.codecs.framing import FRAMERS
from agent.codecs.json import JsonSerializer
from agent.codecs.leef import LeefSerializer
from agent.codecs.syslog import Syslog3164Serializer, Syslog5424Serializer


class SerializerFactory(Protocol):
    """A serializer class: built from its own config model and a truncation hook."""

    def __call__(self, config: Any, on_truncate: TruncateHook | None = None) -> Serializer: ...


CODECS: dict[str, SerializerFactory] = {
    "json": JsonSerializer,
    "ecs": EcsSerializer,
    "cef": CefSerializer,
    "leef": LeefSerializer,
    "syslog5424": Syslog5424Serializer,
    "syslog3164": Syslog3164Serializer,
}


def build_serializer(config: CodecConfig, on_truncate: TruncateHook | None = None) -> Serializer:
    """Build the serializer a codec config selects."""
    return CODECS[config.type](config, on_truncate)


def build_framer(name: str) -> Framer:
    """Build a framer by name (``octet_counting``, ``newline``, ``none``)."""
    return FRAMERS[name]()


__all__ = ["CODECS", "Framer", "Serializer", "build_framer", "build_serializer"]
