"""RFC 5424 / RFC 3164 envelopes: PRI, header charsets and lengths, SD escaping, BOM, composition."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from agent.codecs.syslog import escape_sd, header_field, rfc3339
from tests.codecs.helpers import ADAPTER, base_alert, parse_5424, parse_cef, serializer


class TestRfc5424:
    def test_header_and_sd(self) -> None:
        """PRI = local0*8 + low(4); Graph time cut to microseconds; SD params from the alert."""
        out = serializer({"type": "syslog5424", "hostname": "fwd01", "procid": "42"}).encode(base_alert())
        msg = parse_5424(out)
        assert msg["pri"] == str(16 * 8 + 4)
        assert msg["timestamp"] == "2021-05-02T14:19:01.326666Z"
        assert (msg["hostname"], msg["app_name"], msg["procid"], msg["msgid"]) == (
            "fwd01",
            "siem-agent",
            "42",
            "alert",
        )
        assert msg["sd"]["alert@32473"]["id"] == "da637551227677560813_-961444813"
        assert msg["sd"]["alert@32473"]["severity"] == "low"
        assert parse_cef(msg["msg"])[0][0] == "CEF:0"

    def test_sd_escaping(self) -> None:
        """``"``, ``\\`` and ``]`` are escaped in PARAM-VALUE and read back equal."""
        assert escape_sd('a"b\\c]d') == 'a\\"b\\\\c\\]d'
        alert = base_alert() | {"status": 'x"] [evil@1 a="b"]\\'}
        msg = parse_5424(serializer({"type": "syslog5424", "hostname": "h"}).encode(alert))
        assert list(msg["sd"]) == ["alert@32473"]
        assert msg["sd"]["alert@32473"]["status"] == 'x"] [evil@1 a="b"]\\'

    def test_header_fields_are_printusascii(self) -> None:
        """Spaces and non-ASCII become ``_``; lengths are capped; empty is NILVALUE."""
        assert header_field("my host é", 255) == "my_host__"
        assert header_field("", 48) == "-"
        assert len(header_field("x" * 300, 255)) == 255

    def test_config_and_composition(self) -> None:
        """Facility/severity maps, PEN, no SD, BOM and a JSON MSG compose as configured."""
        cfg = {
            "type": "syslog5424", "hostname": "h", "facility": "auth", "severity_map": {"low": 1},
            "structured_data": False, "bom": True, "msg": {"type": "json"},
        }  # fmt: skip
        out = serializer(cfg).encode(base_alert())
        assert out.startswith(b"<33>1 ")
        assert b" alert - \xef\xbb\xbf{" in out
        pen = parse_5424(
            serializer({"type": "syslog5424", "hostname": "h", "pen": 99999}).encode(base_alert())
        )
        assert list(pen["sd"]) == ["alert@99999"]

    def test_timestamps(self) -> None:
        """Offsets are converted to UTC; garbage gives NILVALUE."""
        assert rfc3339("2021-05-02T16:19:01.5+02:00") == "2021-05-02T14:19:01.500000Z"
        assert rfc3339("2021-05-02T14:19:01Z") == "2021-05-02T14:19:01Z"
        assert rfc3339("2021-13-02T14:19:01Z") is None
        alert = base_alert() | {"lastUpdateDateTime": "soon", "createdDateTime": None}
        assert (
            parse_5424(serializer({"type": "syslog5424", "hostname": "h"}).encode(alert))["timestamp"] == "-"
        )

    @pytest.mark.parametrize(
        "bad",
        [{"app_name": "a b"}, {"msgid": "x" * 33}, {"facility": "local9"}, {"facility": 24}, {"sd_id": "a@b"},
         {"sd_params": {"a=b": "id"}}, {"msg": {"type": "syslog5424"}}, {"severity_map": {"high": 8}}],
    )  # fmt: skip
    def test_rejects_bad_config(self, bad: dict[str, object]) -> None:
        """Header charsets/lengths, facilities, SD names and nesting are validated."""
        with pytest.raises(ValidationError):
            ADAPTER.validate_python({"type": "syslog5424", **bad})

    def test_cap_covers_the_whole_message(self) -> None:
        """max_message_bytes bounds header + SD + MSG together."""
        alert = base_alert() | {"status": "s" * 5000, "description": "d" * 900_000}
        for inner in ("cef", "leef", "json", "ecs"):
            cfg = {"type": "syslog5424", "hostname": "h", "max_message_bytes": 4096, "msg": {"type": inner}}
            assert len(serializer(cfg).encode(alert)) <= 4096


class TestRfc3164:
    def test_layout(self) -> None:
        """``<PRI>Mmm dd hh:mm:ss HOST TAG[pid]: MSG`` with a space-padded day, in UTC."""
        cfg = {"type": "syslog3164", "hostname": "fwd01", "pid": 7, "msg": {"type": "leef"}}
        out = serializer(cfg).encode(base_alert() | {"lastUpdateDateTime": "2021-05-02T01:02:03Z"})
        assert out.startswith(b"<132>May  2 01:02:03 fwd01 siemagent[7]: LEEF:2.0|")
