"""Codec seams: a serializer turns one alert into one message; a framer delimits messages on a stream.

Serializers are pure (no I/O, no clock) and never return bytes that a receiver could read as two
messages: what framing a transport needs is the framer's job, chosen by the sink.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from agent.model import Alert

#: Called with the field name each time a codec truncates a value to fit a limit.
TruncateHook = Callable[[str], None]


class Serializer(Protocol):
    """Encodes one alert as one message body."""

    def encode(self, alert: Alert) -> bytes:
        """Return the message for ``alert`` within the codec's ``max_message_bytes``.

        Raises ``EncodeError`` if the alert cannot be encoded.
        """
        ...

    def encode_within(self, alert: Alert, max_bytes: int) -> bytes:
        """Return the message for ``alert`` in at most ``max_bytes``, truncating the biggest fields.

        How an envelope fits its MSG part into what its header leaves. Raises ``EncodeError``.
        """
        ...


class SerializerFactory(Protocol):
    """A serializer class: built from its own config model and a truncation hook."""

    def __call__(self, config: Any, on_truncate: TruncateHook | None = None) -> Serializer: ...


class Framer(Protocol):
    """Delimits one message for a byte-stream transport."""

    def frame(self, payload: bytes) -> bytes:
        """Return ``payload`` with the framing a receiver needs to find its end."""
        ...
