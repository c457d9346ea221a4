"""Codecs: serializers (alert -> message bytes) and framers (message -> stream bytes).

``CODECS`` is the closed registry from the config ``type`` tag to the serializer class: the message
codecs (``agent.codecs.msg.MSG_CODECS``, which syslog envelopes carry as their MSG part) and the
envelopes. A test checks that its keys are exactly the tags of :data:`~agent.codecs.config.CodecConfig`.
"""

from __future__ import annotations

from agent.codecs.base import Framer, Serializer, SerializerFactory, TruncateHook
from agent.codecs.config import CodecConfig
from agent.codecs.framing import FRAMERS
from agent.codecs.msg import MSG_CODECS
from agent.codecs.syslog import Syslog3164Serializer, Syslog5424Serializer

CODECS: dict[str, SerializerFactory] = {
    **MSG_CODECS,
    "syslog5424": Syslog5424Serializer,
    "syslog3164": Syslog3164Serializer,
}


def build_serializer(config: CodecConfig, on_truncate: TruncateHook | None = None) -> Serializer:
    """Build the serializer a codec config selects."""
    return CODECS[config.type](config, on_truncate)


def build_framer(name: str) -> Framer:
    """Build a framer by name (``octet_counting``, ``newline``, ``none``)."""
    return FRAMERS[name]()


__all__ = ["CODECS", "Framer", "Serializer", "SerializerFactory", "build_framer", "build_serializer"]
