"""Log formatting and the repeat filter."""

from __future__ import annotations

import io
import logging
import os
import stat
from pathlib import Path

import orjson

from agent.logs import JsonFormatter, ReopeningFileHandler, RepeatFilter


def record(msg: str, created: float, level: int = logging.WARNING, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("agent.test", level, __file__, 1, msg, None, None)
    rec.created = created
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


class TestRepeatFilter:
    def test_same_failure_with_different_request_ids_is_one_line_per_window(self) -> None:
        """Errors differing only in per-request UUIDs collapse; after the window one passes again."""
        f = RepeatFilter(window_secs=60)
        err = "Graph returned 503, request-id {}, client-request-id {}"
        ids = [
            ("0b6f6f2e-3c1a-4d47-9a61-0a0f5d7e0a01", "5f0c1a2b-8d7e-4f60-a1b2-c3d4e5f60718"),
            ("9c9b3a44-1f2e-4d3c-8b7a-6f5e4d3c2b1a", "11111111-2222-4333-8444-555555555555"),
        ]
        assert f.filter(record("Graph request failed; retrying.", 100, error=err.format(*ids[0]), tenant="t"))
        assert not f.filter(
            record("Graph request failed; retrying.", 110, error=err.format(*ids[1]), tenant="t")
        )
        assert f.filter(record("Graph request failed; retrying.", 161, error=err.format(*ids[1]), tenant="t"))

    def test_different_sinks_or_errors_are_not_hidden(self) -> None:
        """The same message about another sink, or with another error, still gets through."""
        f = RepeatFilter(window_secs=60)
        assert f.filter(record("Send failed; retrying.", 100, error="connection refused", sink="a"))
        assert f.filter(record("Send failed; retrying.", 101, error="connection refused", sink="b"))
        assert f.filter(record("Send failed; retrying.", 102, error="timed out", sink="a"))
        assert f.filter(record("Started.", 103, level=logging.INFO))
        assert f.filter(record("Started.", 104, level=logging.INFO))


class TestJsonFormatter:
    def test_extra_fields_become_keys(self) -> None:
        """One JSON object per line with message, level and every extra field."""
        line = JsonFormatter().format(record("Send failed; retrying.", 0, sink="splunk", retry_in_secs=1.5))
        doc = orjson.loads(line)
        assert doc["message"] == "Send failed; retrying." and doc["level"] == "warning"
        assert doc["sink"] == "splunk" and doc["retry_in_secs"] == 1.5
        assert "\n" not in line and io.StringIO(line).read() == line


class TestSuppressedCounter:
    def test_agent_exports_suppressed_lines(self, tmp_path: object) -> None:
        """Lines the repeat filter holds back show up in siem_agent_log_lines_suppressed_total."""
        from pathlib import Path

        from agent.app import Agent
        from agent.config import load_settings
        from tests.support.simulator import agent_config

        f = RepeatFilter(window_secs=60)
        for t in range(5):
            f.filter(record("Send failed; retrying.", 100 + t, error="refused", sink="a"))
        assert f.suppressed == 4
        src = {
            "type": "graph_security",
            "name": "s",
            "tenant_id": "t",
            "client_id": "c",
            "client_secret": "x",
        }
        settings = load_settings(
            data=agent_config(Path(str(tmp_path)), [src], [{"type": "stdout", "name": "out"}])
        )
        agent = Agent(settings, log_suppressed=lambda: f.suppressed)
        agent.metrics.refresh()
        agent.metrics.refresh()  # idempotent: counts the difference only
        got = agent.registry.get_sample_value("siem_agent_log_lines_suppressed_total", {"reason": "repeated"})
        assert got == 4


class TestLogFile:
    def test_log_file_is_created_0640_whatever_the_umask(self, tmp_path: Path) -> None:
        """A permissive umask (022) must not make the log world-readable; a strict one (077) still wins."""
        for umask, expected in ((0o022, 0o640), (0o077, 0o600)):
            path = tmp_path / f"agent-{umask:o}.log"
            old = os.umask(umask)
            try:
                handler = ReopeningFileHandler(path)
            finally:
                os.umask(old)
            handler.close()
            assert stat.S_IMODE(path.stat().st_mode) == expected
