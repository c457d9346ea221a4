"""The systemd unit: hardening score, notify type, drain timeout above the agent's."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.receivers import binaries
from tests.receivers.fixtures import require

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "siem-agent.service"


def directives(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found


class TestUnit:
    def test_exposure_score_at_most_1_5(self, tmp_path: Path) -> None:
        """systemd-analyze security --offline rates the unit 1.5 or better."""
        analyze = require(binaries.systemd_analyze())
        copy = tmp_path / "siem-agent.service"
        copy.write_text(UNIT.read_text())
        proc = subprocess.run(
            [*analyze.argv, "security", "--offline=true", "--no-pager", str(copy)],
            env=analyze.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        match = re.search(r"Overall exposure level for siem-agent\.service: ([0-9.]+)", proc.stdout)
        assert match, proc.stdout[-2000:] + proc.stderr[-2000:]
        assert float(match.group(1)) <= 1.5

    def test_lifecycle_directives(self) -> None:
        """Type=notify, validate before start, credentials, state dir, restart, drain-safe stop timeout."""
        d = directives(UNIT.read_text())
        assert d["Type"] == ["notify"]
        assert any("siem-agent validate" in v for v in d["ExecStartPre"])
        assert d["DynamicUser"] == ["yes"] and d["StateDirectory"] == ["siem-agent"]
        assert d["LoadCredential"] and d["Restart"] == ["on-failure"]
        stop = int(d["TimeoutStopSec"][0].rstrip("s"))
        assert stop > 30, "TimeoutStopSec must exceed the default shutdown_timeout_secs (30)"

    def test_descriptor_limit_and_private_mounts(self) -> None:
        """An explicit descriptor limit well above what the agent can use (ops port capped at 32)."""
        d = directives(UNIT.read_text())
        assert int(d["LimitNOFILE"][0]) >= 1024 and d["PrivateMounts"] == ["yes"]
