"""CEF:0 serializer: spec escaping, default mapping, typed keys, limits, truncation accounting."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from agent.codecs.cef import escape_header, escape_value
from tests.codecs.helpers import ADAPTER, base_alert, parse_cef, sample_alerts, serializer


class TestEscaping:
    def test_value_escapes_backslash_first(self) -> None:
        """A literal ``\\=`` becomes ``\\\\\\=`` (never treated as already escaped)."""
        assert escape_value("a\\=b\nc\rd|e") == "a\\\\\\=b\\nc\\rd|e"

    def test_header_escapes_only_pipe_and_backslash(self) -> None:
        """``=`` stays raw in the header."""
        assert escape_header("a|b\\c=d") == "a\\|b\\\\c\\=d".replace("\\=", "=")


class TestDefaultMapping:
    def test_golden_sample(self) -> None:
        """The documentation alert maps to the documented header and keys."""
        out = serializer({"type": "cef"}).encode(base_alert()).decode()
        head, ext = parse_cef(out)
        assert head == [
            "CEF:0", "Microsoft", "Graph Security", "alerts_v2",
            "e0da400f-affd-43ef-b1d5-afc2eb6f2756", "Suspicious execution of hidden file", "3",
        ]  # fmt: skip
        assert ext["rt"] == "1619965141326"  # 2021-05-02T14:19:01.3266667Z
        assert ext["start"] == "1619423150116"
        assert ext["externalId"] == "da637551227677560813_-961444813"
        assert ext["shost"] == "yonif-lap3.middleeast.corp.microsoft.com"
        assert ext["src"] == "1.1.1.1"
        assert ext["suser"] == "SYSTEM"
        assert ext["sntdom"] == "NT AUTHORITY"
        assert ext["filePath"] == "C:\\Program Files\\temp\\MsSense.exe"  # full path, as FilePath means
        assert ext["fileHash"] == "8963a19fb992ad9a76576c5638fd68292cffb9aaac29eb8285f9abf6196a7dec"
        assert ext["fsize"] == "6136392"
        assert ext["cs5Label"] == "mitreTechniques" and ext["cs5"] == "T1564.001"
        assert ext["cs6"].endswith("?tid=b3c1b5fc-828c-45fa-a1e1-10d74f6d6e9c")
        assert "c6a1" not in ext and "c6a1Label" not in ext  # no IPv6 in the sample
        assert not out.endswith(" ")

    def test_every_sample_encodes(self) -> None:
        """All documentation alerts (with and without evidence) encode and parse back."""
        for alert in sample_alerts():
            head, ext = parse_cef(serializer({"type": "cef"}).encode(alert).decode())
            assert head[5] == alert["title"]
            assert ext["externalId"] == alert["id"]

    def test_long_id_is_omitted_not_cut(self) -> None:
        """externalId is 40 chars max: a longer id is left out rather than made wrong."""
        alert = base_alert() | {"id": "x" * 41}
        _, ext = parse_cef(serializer({"type": "cef"}).encode(alert).decode())
        assert "externalId" not in ext

    def test_ip_keys_are_typed(self) -> None:
        """IPv6 goes to c6a1 (with its label), never to src."""
        alert = base_alert()
        alert["evidence"] = [
            {"@odata.type": "#microsoft.graph.security.ipEvidence", "ipAddress": "2001:db8::1"}
        ]
        _, ext = parse_cef(serializer({"type": "cef"}).encode(alert).decode())
        assert "src" not in ext
        assert ext["c6a1"] == "2001:db8::1" and ext["c6a1Label"] == "ipv6Address"

    def test_user_and_url_evidence(self) -> None:
        """userEvidence wins over the process account; urlEvidence fills request."""
        alert = base_alert()
        alert["evidence"].insert(0, {
            "@odata.type": "#microsoft.graph.security.userEvidence",
            "userAccount": {"accountName": "alice", "domainName": "CONTOSO", "userPrincipalName": "alice@contoso.com"},
        })  # fmt: skip
        alert["evidence"].append(
            {"@odata.type": "#microsoft.graph.security.urlEvidence", "url": "https://x/?a=1"}
        )
        _, ext = parse_cef(serializer({"type": "cef"}).encode(alert).decode())
        assert (ext["suser"], ext["sntdom"], ext["suid"]) == ("alice", "CONTOSO", "alice@contoso.com")
        assert ext["request"] == "https://x/?a=1"


class TestFilePath:
    """``filePath`` is the full path (CommonSecurityLog.FilePath: "including the file name")."""

    @pytest.mark.parametrize("codec", ["cef", "leef"])
    @pytest.mark.parametrize(
        ("details", "expected"),
        [
            ({"filePath": "C:\\Windows\\System32\\", "fileName": "a.dll"}, "C:\\Windows\\System32\\a.dll"),
            ({"filePath": "/usr/bin", "fileName": "curl"}, "/usr/bin/curl"),
            ({"filePath": "/tmp", "fileName": None}, None),  # a directory alone is not a file's path
            ({"filePath": None, "fileName": "x.exe"}, None),
        ],
    )
    def test_directory_and_name_joined(
        self, codec: str, details: dict[str, object], expected: str | None
    ) -> None:
        """Graph's directory and file name are joined with the directory's own separator."""
        alert = base_alert()
        alert["evidence"][1]["fileDetails"].update(details)
        text = serializer({"type": codec}).encode(alert).decode()
        values = _attrs(codec, text)
        assert values.get("filePath") == expected

    @pytest.mark.parametrize("codec", ["cef", "leef"])
    def test_mapping_to_a_text_is_kept(self, codec: str) -> None:
        """A user mapping that points ``filePath`` at a text keeps that text."""
        cfg = {"type": codec, "mapping": {"filePath": "evidence[fileEvidence].fileDetails.filePath"}}
        values = _attrs(codec, serializer(cfg).encode(base_alert()).decode())
        assert values["filePath"] == "C:\\Program Files\\temp"


def _attrs(codec: str, text: str) -> dict[str, str]:
    if codec == "cef":
        return parse_cef(text)[1]
    head = text.split("|", 6)
    return dict(p.split("=", 1) for p in head[6].split("^"))


class TestConfig:
    def test_mapping_override_remove_and_constants(self) -> None:
        """Users add keys, drop defaults with "", and add constants; an overridden csN loses its label."""
        cfg = {
            "type": "cef",
            "mapping": {"msg": "", "cs1": "assignedTo | title", "act": "determination"},
            "constants": {"cs1Label": "owner"},
        }
        _, ext = parse_cef(serializer(cfg).encode(base_alert()).decode())
        assert "msg" not in ext
        assert ext["cs1"] == "Suspicious execution of hidden file" and ext["cs1Label"] == "owner"
        assert ext["act"] == "unknown"

    def test_severity_map(self) -> None:
        """Severity comes from the configurable map; unknown values use the ``unknown`` entry."""
        ser = serializer({"type": "cef", "severity_map": {"low": 2, "unknown": 7}})
        assert parse_cef(ser.encode(base_alert()).decode())[0][6] == "2"
        assert parse_cef(ser.encode(base_alert() | {"severity": "unknownFutureValue"}).decode())[0][6] == "7"

    @pytest.mark.parametrize(
        "bad",
        [
            {"mapping": {"bad key": "title"}},
            {"mapping": {"cs1": "evidence[x"}},
            {"severity_map": {"high": 11}},
            {"name": "a b"},
            {"surprise": 1},
        ],
    )
    def test_rejects_bad_config(self, bad: dict[str, object]) -> None:
        """Keys, paths, severities and unknown options are validated at load time."""
        with pytest.raises(ValidationError):
            ADAPTER.validate_python({"type": "cef", **bad})


class TestLimits:
    def test_per_key_limits_and_hook(self) -> None:
        """msg is cut to 1023 chars with the marker, Name to 512, and each cut is reported."""
        cuts: list[str] = []
        alert = base_alert() | {"description": "d" * 5000, "title": "n" * 5000}
        head, ext = parse_cef(serializer({"type": "cef"}, cuts.append).encode(alert).decode())
        assert len(ext["msg"]) == 1023 and ext["msg"].endswith("…[truncated]")
        assert len(head[5]) == 512
        assert sorted(cuts) == ["msg", "name"]

    def test_message_cap(self) -> None:
        """Many big custom strings are shrunk, largest first, to fit max_message_bytes."""
        cuts: list[str] = []
        alert = base_alert() | {f"f{i}": "é\\=" * 1400 for i in range(6)}
        cfg = {"type": "cef", "max_message_bytes": 8192, "mapping": {f"cs{i + 1}": f"f{i}" for i in range(6)}}
        out = serializer(cfg, cuts.append).encode(alert)
        assert len(out) <= 8192
        _, ext = parse_cef(out.decode())
        assert all(ext[f"cs{i + 1}"].endswith("…[truncated]") for i in range(6))
        assert {f"cs{i + 1}" for i in range(6)} <= set(cuts)
