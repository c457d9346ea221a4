"""The CEF fast path and the timestamp cache give exactly what the general code gives, or step aside."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.codecs import syslog
from agent.codecs.cef import CefSerializer
from agent.codecs.config import CefCodecConfig, Syslog5424CodecConfig
from agent.codecs.syslog import Syslog5424Serializer
from agent.codecs.text import EpochMillis, epoch_millis
from tests.codecs.helpers import base_alert, sample_alerts
from tests.codecs.test_properties import NASTY, TEXT

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DIGITS = st.text(st.sampled_from("0123456789"), min_size=1, max_size=2)
STAMP = st.builds(
    lambda y, mo, d, sep, h, mi, s, frac, zone: f"{y}-{mo}-{d}{sep}{h}:{mi}:{s}{frac}{zone}",
    st.sampled_from(["2021", "1969", "0001", "9999", "\uff12\uff10\uff12\uff11"]),
    st.sampled_from(["01", "02", "12", "13", "1"]),
    st.sampled_from(["01", "29", "31", "00"]),
    st.sampled_from(["T", "t", " ", "X"]),
    DIGITS,
    DIGITS,
    st.one_of(DIGITS, st.just("60"), st.just("\uff159")),
    st.one_of(
        st.just(""), st.just("."), st.text(st.sampled_from("0123456789\u0663"), max_size=12).map(".".__add__)
    ),
    st.sampled_from(["Z", "z", "+00:00", "-05:30", "", "ZZ", " Z"]),
)
#: Text the fast path takes: printable, with the characters CEF escapes (and LF/CR, which it keeps).
CLEAN = st.text(
    st.one_of(st.characters(min_codepoint=0x21, max_codepoint=0x7E), st.sampled_from("=\\\n\r| é€"))
)
VALUES = st.one_of(
    *[CLEAN] * 8,
    TEXT,
    STAMP,
    st.none(),
    st.integers(),
    st.booleans(),
    st.lists(CLEAN, max_size=3),
    st.just([]),
)


class TestEpochMillis:
    @SETTINGS
    @given(st.lists(st.one_of(STAMP, TEXT, st.integers()), max_size=8))
    def test_same_as_epoch_millis(self, values: list[Any]) -> None:
        """The cached conversion equals the plain one for any value, in any order (cache hits too)."""
        cached = EpochMillis(size=4)
        for value in values + values:
            assert cached(value) == epoch_millis(value), value

    def test_graph_form(self) -> None:
        """Graph's seven-digit form: milliseconds truncated, like datetime does."""
        cached = EpochMillis()
        assert cached("2021-05-02T14:19:01.3266667Z") == "1619965141326"
        assert cached("1969-12-31T23:59:59.9999999Z") == "-1"
        assert cached("2021-05-02T14:19:01Z") == "1619965141000"


@st.composite
def mapped_alerts(draw: st.DrawFn) -> dict[str, Any]:
    """Alerts with every mapped field drawn: clean, hostile (as in test_properties) or timestamps."""
    alert = base_alert()
    for key in ("title", "description", "category", "detectorId", "status", "tenantId", "incidentId",
                "lastUpdateDateTime", "firstActivityDateTime", "lastActivityDateTime", "mitreTechniques",
                "alertWebUrl", "classification", "detectionSource", "serviceSource", "id"):  # fmt: skip
        alert[key] = draw(VALUES)
    alert["evidence"][0]["deviceDnsName"] = draw(VALUES)
    alert["evidence"].append({"@odata.type": "#x.userEvidence", "userAccount": {"accountName": draw(VALUES)}})
    alert["evidence"].append({"@odata.type": "#x.fileEvidence", "fileDetails": {"fileSize": draw(VALUES)}})
    return alert


CONFIGS: list[dict[str, Any]] = [
    {},
    {"max_message_bytes": 2048},
    {"mapping": {"cs1": "evidence[*].hostName | title", "cn1": "incidentId", "rt": "createdDateTime"}},
    {"constants": {"dvchost": "siem-agent.bench"}, "name": "evidence[deviceEvidence].hostName | title"},
]


class TestCefFastPath:
    @SETTINGS
    @given(mapped_alerts(), st.sampled_from(CONFIGS))
    def test_equals_general_path(self, alert: dict[str, Any], config: dict[str, Any]) -> None:
        """Wherever the fast path answers, its bytes are the general path's; it never calls the hook."""
        calls: list[str] = []
        cef = CefSerializer(CefCodecConfig(**config), calls.append)
        fast = cef._encode_fast(alert)
        assert calls == []
        reference = cef.encode_reference(alert, cef._max)
        if fast is not None and len(fast) <= cef._max:
            assert fast == reference
        assert cef.encode(alert) == reference

    def test_taken_for_real_alerts(self) -> None:
        """The documentation samples (and their nasty-but-clean variants) take the fast path."""
        cef = CefSerializer(CefCodecConfig())
        for alert in [*sample_alerts(), base_alert()]:
            fast = cef._encode_fast(alert)
            assert fast is not None
            assert fast == cef.encode_reference(alert, cef._max)
        alert = base_alert() | {"description": "a=b\\c\nd\re|f", "mitreTechniques": ["T1", "T2"]}
        assert cef._encode_fast(alert) == cef.encode_reference(alert, cef._max)

    @given(NASTY)
    def test_steps_aside_for_nasty_characters(self, char: str) -> None:
        """Control characters, surrogates and trailing spaces: the fast path steps aside or agrees."""
        cef = CefSerializer(CefCodecConfig())
        alert = base_alert() | {"category": f"x{char}", "title": f"t{char}"}
        fast = cef._encode_fast(alert)
        assert fast is None or fast == cef.encode_reference(alert, cef._max)


class TestSyslogFastPath:
    @SETTINGS
    @given(mapped_alerts(), st.sampled_from([2048, 8192]))
    def test_equals_general_path(self, alert: dict[str, Any], max_bytes: int) -> None:
        """RFC 5424 + CEF: the same bytes with and without the SD and TIMESTAMP fast paths."""
        config = Syslog5424CodecConfig(hostname="h", max_message_bytes=max_bytes)
        fast, general = Syslog5424Serializer(config), Syslog5424Serializer(config)
        general._plain_params = None
        general._time_key = None
        general._rfc3339 = syslog.rfc3339  # type: ignore[assignment]
        assert fast.encode(alert) == general.encode(alert)
