"""The codecs that write one whole message body, by config ``type`` tag.

A syslog envelope carries one of them as its MSG part and looks it up here; ``agent.codecs.CODECS``
is this registry plus the envelopes (which cannot be listed here: they import it).
"""

from __future__ import annotations

from agent.codecs.base import SerializerFactory
from agent.codecs.cef import CefSerializer
from agent.codecs.ecs import EcsSerializer
from agent.codecs.json import JsonSerializer
from agent.codecs.leef import LeefSerializer

MSG_CODECS: dict[str, SerializerFactory] = {
    "json": JsonSerializer,
    "ecs": EcsSerializer,
    "cef": CefSerializer,
    "leef": LeefSerializer,
}
