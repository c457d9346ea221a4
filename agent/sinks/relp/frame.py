"""RELP frames, responses and offers, as specified in "RELP - The Reliable Event Logging Protocol"
by Rainer Gerhards (librelp ``doc/relp.html``) and implemented by rsyslog's librelp::

    RELP-FRAME = TXNR SP COMMAND SP DATALEN [SP DATA] TRAILER
    TXNR       = NUMBER            ; 1..999999999, then wraps to 1; 0 only in server hints
    COMMAND    = 1*32ALPHA         ; open, syslog, close, rsp, serverclose
    DATALEN    = NUMBER            ; octets in DATA; 0 means no SP and no DATA
    TRAILER    = LF

An ``rsp`` frame's DATA is ``RSP-CODE SP HUMANMSG [LF CMDDATA]`` (``200 OK``, ``500 error``); the
``open`` offers are LF-separated ``name[=value]`` lines (``relp_version=0``, ``commands=syslog``).
Everything here is pure: no I/O, fully bounded.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.errors import TransientSinkError

MAX_TXNR = 999_999_999
_MAX_COMMAND = 32
_MAX_NUMBER_DIGITS = 9
#: A header longer than this without its third separator is not RELP.
_MAX_HEADER = _MAX_NUMBER_DIGITS + 1 + _MAX_COMMAND + 1 + _MAX_NUMBER_DIGITS + 1


@dataclass(frozen=True, slots=True)
class Frame:
    """One RELP frame."""

    txnr: int
    command: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Response:
    """The DATA of an ``rsp`` frame: its code, human-readable text and command data."""

    code: int
    text: str
    body: bytes = b""

    @property
    def ok(self) -> bool:
        return self.code == 200


def protocol_error(what: str) -> TransientSinkError:
    """A peer that does not speak RELP (or broke a frame): the session cannot continue."""
    return TransientSinkError(f"RELP protocol error: {what}")


def encode(txnr: int, command: str, data: bytes = b"") -> bytes:
    """One frame, ready to write."""
    if data:
        return b"%d %s %d %s\n" % (txnr, command.encode("ascii"), len(data), data)
    return b"%d %s 0\n" % (txnr, command.encode("ascii"))


def _number(token: bytes, what: str) -> int:
    if not token or len(token) > _MAX_NUMBER_DIGITS or not token.isdigit():
        raise protocol_error(f"bad {what} {token[:16]!r}")
    return int(token)


class FrameParser:
    """Splits a byte stream into frames; frames may arrive torn across reads."""

    def __init__(self, max_data: int) -> None:
        self._buf = bytearray()
        self._max_data = max_data

    def feed(self, chunk: bytes) -> list[Frame]:
        """Add received bytes; return every frame they complete. Raises on malformed input."""
        self._buf += chunk
        frames = []
        while (frame := self._next()) is not None:
            frames.append(frame)
        return frames

    def _next(self) -> Frame | None:
        buf = self._buf
        first = buf.find(b" ", 0, _MAX_HEADER)
        second = buf.find(b" ", first + 1, _MAX_HEADER) if first >= 0 else -1
        end_len = -1
        if second >= 0:
            for i in range(second + 1, min(len(buf), second + 2 + _MAX_NUMBER_DIGITS)):
                if buf[i] in b" \n":
                    end_len = i
                    break
        if end_len < 0:
            if len(buf) >= _MAX_HEADER:
                raise protocol_error(f"no frame header in {bytes(buf[:24])!r}")
            return None
        txnr = _number(bytes(buf[:first]), "txnr")
        command = bytes(buf[first + 1 : second])
        if not command or len(command) > _MAX_COMMAND or not command.isalpha():
            raise protocol_error(f"bad command {command[:16]!r}")
        datalen = _number(bytes(buf[second + 1 : end_len]), "datalen")
        if datalen > self._max_data:
            raise protocol_error(f"frame of {datalen} bytes exceeds {self._max_data}")
        if datalen == 0:
            if buf[end_len] != 0x0A:
                # Lenient: also accept "N cmd 0 SP LF" (an empty DATA after its separator).
                if len(buf) < end_len + 2:
                    return None
                if buf[end_len + 1] != 0x0A:
                    raise protocol_error("missing trailer")
                end_len += 1
            del buf[: end_len + 1]
            return Frame(txnr, command.decode("ascii"), b"")
        if buf[end_len] != 0x20:
            raise protocol_error("DATALEN > 0 but no DATA")
        start = end_len + 1
        if len(buf) < start + datalen + 1:
            return None
        if buf[start + datalen] != 0x0A:
            raise protocol_error("missing trailer")
        data = bytes(buf[start : start + datalen])
        del buf[: start + datalen + 1]
        return Frame(txnr, command.decode("ascii"), data)


def parse_response(data: bytes) -> Response:
    """``200 OK[\\nCMDDATA]`` -> ``Response``."""
    head, _, body = data.partition(b"\n")
    code, _, text = head.partition(b" ")
    if len(code) != 3 or not code.isdigit():
        raise protocol_error(f"bad rsp code {head[:24]!r}")
    return Response(int(code), text.decode("utf-8", "replace"), body)


def parse_offers(data: bytes) -> dict[str, str]:
    """``name[=value]`` lines -> mapping (values keep their commas, e.g. ``commands=syslog,x``)."""
    offers = {}
    for line in data.split(b"\n"):
        if line:
            name, _, value = line.partition(b"=")
            offers[name.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
    return offers
