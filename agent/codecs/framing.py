"""Framers for stream transports (RFC 6587): octet counting, newline, and none (datagrams)."""

from __future__ import annotations


class OctetCountingFramer:
    """``MSG-LEN SP MSG`` (RFC 6587 §3.4.1): safe for any payload bytes."""

    def frame(self, payload: bytes) -> bytes:
        return b"%d %b" % (len(payload), payload)


class NewlineFramer:
    """``MSG LF`` (RFC 6587 §3.4.2, NDJSON). Payloads must not contain LF; every codec guarantees that."""

    def frame(self, payload: bytes) -> bytes:
        return payload + b"\n"


class NoFramer:
    """One message per datagram (RFC 5426): no framing bytes."""

    def frame(self, payload: bytes) -> bytes:
        return payload


FRAMERS: dict[str, type[OctetCountingFramer | NewlineFramer | NoFramer]] = {
    "octet_counting": OctetCountingFramer,
    "newline": NewlineFramer,
    "none": NoFramer,
}
