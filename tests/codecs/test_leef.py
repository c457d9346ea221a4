"""LEEF 2.0 serializer: header, delimiter choice, values that contain the delimiter."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tests.codecs.helpers import ADAPTER, base_alert, serializer


def parse_leef(message: str) -> tuple[list[str], dict[str, str]]:
    head = message.split("|", 6)
    delim = head[5]
    char = chr(int(delim[-2:], 16)) if len(delim) > 1 else delim
    return head[:6], dict(p.split("=", 1) for p in head[6].split(char))


class TestLeef:
    def test_golden_sample(self) -> None:
        """Header, sev and devTime with its format for the documentation alert."""
        head, attrs = parse_leef(serializer({"type": "leef"}).encode(base_alert()).decode())
        assert head == [
            "LEEF:2.0",
            "Microsoft",
            "Graph Security",
            "alerts_v2",
            "DefenseEvasion",  # EventID: the category (deploy/qradar/qid-map.csv), not the detector
            "^",
        ]
        assert attrs["sev"] == "3"
        assert attrs["devTime"] == "May 02 2021 14:19:01.326 UTC"
        assert attrs["devTimeFormat"] == "MMM dd yyyy HH:mm:ss.SSS z"
        assert attrs["usrName"] == "SYSTEM" and attrs["src"] == "1.1.1.1"

    def test_hex_delimiter_and_hostile_values(self) -> None:
        """With TAB as delimiter, tabs/newlines in values become spaces: no forged attribute."""
        alert = base_alert() | {"title": "a\tsev=10\nb", "status": "x^y"}
        head, attrs = parse_leef(serializer({"type": "leef", "delimiter": "x09"}).encode(alert).decode())
        assert head[5] == "x09"
        assert attrs["title"] == "a sev=10 b" and attrs["sev"] == "3" and attrs["status"] == "x^y"
        _, attrs = parse_leef(serializer({"type": "leef"}).encode(alert).decode())
        assert attrs["status"] == "x\ufffdy"

    @pytest.mark.parametrize("delimiter", ["=", "|", "ab", "x3d", "a", " ", "x0a"])
    def test_rejects_bad_delimiters(self, delimiter: str) -> None:
        """Delimiters that would break parsing are refused at load time."""
        with pytest.raises(ValidationError):
            ADAPTER.validate_python({"type": "leef", "delimiter": delimiter})
