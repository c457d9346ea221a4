"""The agent's one error tree.

Every error the agent raises on purpose derives from :class:`AgentError`. Each class says whether
retrying the same operation later can succeed (``retriable``); supervisors decide with that flag
alone, never by matching messages::

    AgentError
    ├── ConfigError            bad configuration (exit 78); never retriable
    ├── StateError             checkpoint unreadable, corrupt or unwritable (exit 74)
    ├── SourceError            a source could not fetch
    │   ├── AuthError          token acquisition failed (bad credentials, consent missing);
    │   │                      a sink that authenticates (Logs Ingestion) holds it as TransientSinkError
    │   ├── ThrottledError     429: retriable after ``retry_after`` seconds
    │   ├── TransientSourceError  5xx, timeouts, connection errors, malformed or oversized pages
    │   └── UpstreamProtocolError an answer the source will not act on: a redirect, a nextLink to
    │                          another origin or seen before, a page contradicting its own query
    ├── EncodeError            one alert could not be encoded (dead-lettered, never retried)
    └── SinkError              a sink could not deliver
        ├── TransientSinkError retriable: connection lost, 5xx, 429, timeouts
        │   └── EndpointError  the URL is wrong (3xx, 404, 405): held, the sink not ready
        └── PermanentSinkError the receiver rejected the data itself (dead-lettered)

Messages never contain secret values: configuration keeps them as ``SecretStr`` and the
code that builds messages never formats a secret.
"""

from __future__ import annotations

from typing import ClassVar


class AgentError(Exception):
    """Root of all errors the agent raises deliberately."""

    retriable: ClassVar[bool] = False


class ConfigError(AgentError):
    """The configuration is invalid; ``problems`` holds one ``dotted.path: message`` per line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class StateError(AgentError):
    """The checkpoint in the state directory cannot be read, parsed or written."""


class SourceError(AgentError):
    """A source failed to fetch alerts."""


class AuthError(SourceError):
    """Token acquisition failed. Retriable: credentials may be restored or consent granted later."""

    retriable = True


class ThrottledError(SourceError):
    """The service answered 429; wait ``retry_after`` seconds before any further request."""

    retriable = True

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TransientSourceError(SourceError):
    """A failure that may pass: 5xx, timeout, connection reset, malformed page."""

    retriable = True


class UpstreamProtocolError(SourceError):
    """The upstream answered outside the protocol the source relies on (a redirect, a nextLink to
    another origin or one already followed, a page that contradicts its own query). Not retried at
    once: the poll fails, is logged once, and the stream backs off."""


class EncodeError(AgentError):
    """One alert could not be encoded by a codec."""


class SinkError(AgentError):
    """A sink could not deliver a batch."""


class TransientSinkError(SinkError):
    """Delivery failed for a reason that may pass; the batch is retried, never acknowledged."""

    retriable = True

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class EndpointError(TransientSinkError):
    """The sink's URL is wrong (a redirect, 404, 405): the batch is held until an operator fixes it."""


class PermanentSinkError(SinkError):
    """The receiver rejected the batch itself; retrying cannot help, so it is dead-lettered."""
