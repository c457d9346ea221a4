"""Real parsers: rsyslog 8.2302 (+ liblognorm CEF) and syslog-ng 3.38 read back what we write.

For every transport (TCP octet counting, TCP LF, UDP, TLS) N alerts in must be exactly N records out,
hostile ones included: a sentinel sent last on the same transport must be record N+1. Every header
field, SD param and CEF header/extension value must be parsed back equal to what we wrote.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from typing import Any

import pytest

from agent.codecs import build_framer
from tests.codecs.helpers import hostile_alerts, parse_5424, parse_cef, sample_alerts, serializer
from tests.receivers.fixtures import Receiver

ALERTS = sample_alerts() + hostile_alerts()
HOST = "siem-test"
SENTINEL_5424 = b"<14>1 2024-01-01T00:00:00Z sentinel sentinel - SENTINEL - end"
SENTINEL_3164 = b"<14>Jan  1 00:00:00 sentinel sentinel: end"

Send = Callable[[Receiver, str, list[bytes]], None]


def send_stream(
    receiver: Receiver, port: str, messages: list[bytes], framing: str, tls: bool = False
) -> None:
    framer = build_framer(framing)
    data = b"".join(framer.frame(m) for m in messages)
    with socket.create_connection(("127.0.0.1", receiver.ports[port]), timeout=10) as raw:
        if tls:
            ctx = ssl.create_default_context(cafile=str(receiver.ca_file))
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                s.sendall(data)
        else:
            raw.sendall(data)


def send_udp(receiver: Receiver, port: str, messages: list[bytes]) -> None:
    """One datagram at a time, each after the previous one is parsed: UDP drops what a busy receiver
    cannot read in time, and that loss is the transport's, not the codec's. A datagram parsed as
    two records still shows: the final count is checked by :func:`roundtrip`."""
    since = receiver.mark()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for n, m in enumerate(messages):
            s.sendto(m, ("127.0.0.1", receiver.ports[port]))
            if n + 1 < len(messages):
                receiver.wait_for(n + 1, since)


def roundtrip(
    receiver: Receiver, messages: list[bytes], sentinel: bytes, send: Callable[[list[bytes]], None]
) -> list[dict[str, Any]]:
    """Send messages + sentinel; return exactly the records of the messages (fails on any extra)."""
    since = receiver.mark()
    send([*messages, sentinel])
    records = receiver.wait_for(len(messages) + 1, since)
    assert len(records) == len(messages) + 1, f"{len(records) - 1} records for {len(messages)} messages"
    last = records[-1]
    assert "sentinel" in (last.get("hostname"), last.get("HOST")), last
    return records[:-1]


def encode_all(config: dict[str, Any]) -> list[bytes]:
    return [serializer(config | {"hostname": HOST}).encode(a) for a in ALERTS]


def check_cef(record_cef: dict[str, Any], msg: str) -> None:
    head, ext = parse_cef(msg)
    assert [
        record_cef[k]
        for k in ("DeviceVendor", "DeviceProduct", "DeviceVersion", "SignatureID", "Name", "Severity")
    ] == head[1:]
    # liblognorm 2.0.6 drops the first character of the first key (no space after the 7th "|")
    first = next(iter(ext))
    expected = {(k[1:] if k == first else k): v for k, v in ext.items()}
    assert record_cef["Extensions"] == expected


class TestRsyslog:
    @pytest.mark.parametrize("inner", ["cef", "leef", "json", "ecs"])
    @pytest.mark.parametrize("transport", ["octet", "lf", "udp", "tls"])
    def test_5424(self, rsyslog: Receiver, inner: str, transport: str) -> None:
        """RFC 5424 header, SD and MSG (CEF via liblognorm) read back equal; N in, N out."""
        messages = encode_all({"type": "syslog5424", "procid": "4242", "msg": {"type": inner}})
        send = {
            "octet": lambda ms: send_stream(rsyslog, "tcp", ms, "octet_counting"),
            "lf": lambda ms: send_stream(rsyslog, "tcp", ms, "newline"),
            "udp": lambda ms: send_udp(rsyslog, "udp", ms),
            "tls": lambda ms: send_stream(rsyslog, "tls", ms, "octet_counting", tls=True),
        }[transport]
        records = roundtrip(rsyslog, messages, SENTINEL_5424, send)
        for record, message in zip(records, messages, strict=True):
            ours = parse_5424(message)
            assert (record["hostname"], record["app-name"], record["procid"], record["msgid"]) == (
                HOST,
                "siem-agent",
                "4242",
                "alert",
            )
            assert record["pri"] == ours["pri"]
            assert record["$!"]["rfc5424-sd"] == ours["sd"]
            assert record["msg"] == ours["msg"]
            if inner == "cef":
                check_cef(record["$!"]["cef"], ours["msg"])

    def test_3164_cef(self, rsyslog: Receiver) -> None:
        """RFC 3164 + CEF over LF-framed TCP: tag, host and every CEF field read back equal."""
        messages = encode_all({"type": "syslog3164", "msg": {"type": "cef"}})
        records = roundtrip(
            rsyslog, messages, SENTINEL_3164, lambda ms: send_stream(rsyslog, "tcp", ms, "newline")
        )
        for record, message in zip(records, messages, strict=True):
            msg = message.decode().split(" siemagent: ", 1)[1]
            assert (record["hostname"], record["syslogtag"]) == (HOST, "siemagent:")
            assert record["msg"].lstrip(" ") == msg
            check_cef(record["$!"]["cef"], msg)


class TestSyslogNg:
    @pytest.mark.parametrize("inner", ["cef", "leef", "json"])
    @pytest.mark.parametrize("transport", ["octet", "lf", "udp", "tls"])
    def test_5424(self, syslog_ng: Receiver, inner: str, transport: str) -> None:
        """RFC 5424 header, SD params and MESSAGE read back equal; N in, N out."""
        messages = encode_all({"type": "syslog5424", "procid": "4242", "msg": {"type": inner}})
        send = {
            "octet": lambda ms: send_stream(syslog_ng, "tcp", ms, "octet_counting"),
            "lf": lambda ms: send_stream(syslog_ng, "tcp_lf", ms, "newline"),
            "udp": lambda ms: send_udp(syslog_ng, "udp", ms),
            "tls": lambda ms: send_stream(syslog_ng, "tls", ms, "octet_counting", tls=True),
        }[transport]
        records = roundtrip(syslog_ng, messages, SENTINEL_5424, send)
        for record, message in zip(records, messages, strict=True):
            ours = parse_5424(message)
            assert (record["HOST"], record["PROGRAM"], record["PID"], record["MSGID"]) == (
                HOST,
                "siem-agent",
                "4242",
                "alert",
            )
            assert record["PRI"] == ours["pri"]
            assert record["_SDATA"] == ours["sd"]
            assert record["MESSAGE"] == ours["msg"]

    @pytest.mark.parametrize("transport", ["tcp_bsd", "udp_bsd"])
    def test_3164(self, syslog_ng: Receiver, transport: str) -> None:
        """RFC 3164 over LF-framed TCP and UDP: host, program and MESSAGE read back equal."""
        messages = encode_all({"type": "syslog3164", "pid": 7, "msg": {"type": "cef"}})
        send = (
            (lambda ms: send_stream(syslog_ng, "tcp_bsd", ms, "newline"))
            if transport == "tcp_bsd"
            else (lambda ms: send_udp(syslog_ng, "udp_bsd", ms))
        )
        records = roundtrip(syslog_ng, messages, SENTINEL_3164, send)
        for record, message in zip(records, messages, strict=True):
            assert (record["HOST"], record["PROGRAM"], record["PID"]) == (HOST, "siemagent", "7")
            assert record["MESSAGE"] == message.decode().split(" siemagent[7]: ", 1)[1]
