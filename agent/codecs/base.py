"""Codec seams: a serializer turns one alert into one message; a framer delimits messages on a stream.

Serializers are pure (no I/O, no clock) and never return bytes that a receiver could read as two
messages: what framing a transport needs is the framer's job, chosen by the sink.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from agent.model import Alert

#: Called with the field name each time a codec truncates a value to fit a limit.
TruncateHook = Callable[[str], None]


class Serializer(Protocol):
    """Encodes one alert as one message body."""

    def encode(self, alert: Alert) -> bytes:
        """Return the message for ``alert``. Raises ``EncodeError`` if the alert cannot be encoded."""
        ...


class Framer(Protocol):
    """Delimits one message for a byte-stream transport."""

    def frame(self, payload: bytes) -> bytes:
        """Return ``payload`` with the framing a receiver needs to find its end."""
        ...
