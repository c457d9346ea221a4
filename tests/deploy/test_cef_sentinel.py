"""Every CEF key the cef codec writes lands in a named Microsoft Sentinel CommonSecurityLog column
(nothing in AdditionalExtensions), per Microsoft's CEF mapping (tests/data/sentinel)."""

from __future__ import annotations

import re

from tests.codecs.helpers import data_csv, doc_samples, serializer, synthetic_alert

COLUMNS = {row["cef_key"]: row["column"] for row in data_csv("sentinel/commonsecuritylog-cef.csv")}


def test_every_emitted_key_has_a_column() -> None:
    """Default mapping over the documentation samples and the all-evidence alert."""
    emitted: set[str] = set()
    for alert in [*doc_samples(), synthetic_alert()]:
        text = serializer({"type": "cef"}).encode(alert).decode()
        emitted |= set(re.findall(r"(?:\|| )([A-Za-z0-9]+)=", text.split("|", 7)[7]))
    assert emitted - set(COLUMNS) == set()
    assert {"filePath", "sproc", "spid", "sourceDnsDomain", "suid"} <= emitted


def test_file_path_is_the_full_path() -> None:
    """FilePath means "full path, including the file name": the value ends with the file name."""
    checked = 0
    for alert in [*doc_samples(), synthetic_alert()]:
        text = serializer({"type": "cef"}).encode(alert).decode()
        paths = re.findall(r" filePath=(.*?) fileHash=", text)
        names = re.findall(r" fname=(.*?) filePath=", text)
        assert len(paths) == len(names)
        for path, name in zip(paths, names, strict=True):
            assert path.endswith(name)
            checked += 1
    assert checked, "no fname/filePath pair matched in any sample: nothing was checked"
