"""File sink: a torn last line (crash mid-write) is repaired before appending."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from agent.errors import TransientSinkError
from agent.metrics import AgentMetrics
from agent.model import Event
from agent.sinks.base import SinkContext
from agent.sinks.config import FileSinkConfig
from agent.sinks.file import FileSink


def sink(path: Path) -> FileSink:
    cfg = FileSinkConfig(type="file", name="f", path=str(path))
    return FileSink(cfg, SinkContext("f", AgentMetrics(CollectorRegistry())))


class TestTornTail:
    async def test_partial_last_line_is_cut_before_new_records(self, tmp_path: Path) -> None:
        """'a', 'b', then half of 'c': the half line goes, the re-sent 'c' lands on its own line."""
        path = tmp_path / "out.jsonl"
        path.write_bytes(b'{"id":"a"}\n{"id":"b"}\n{"id":"c","ti')
        s = sink(path)
        await s.start()
        await s.send([Event({"id": "c"}, b'{"id":"c"}')])
        await s.aclose()
        assert path.read_bytes() == b'{"id":"a"}\n{"id":"b"}\n{"id":"c"}\n'

    async def test_only_a_partial_line(self, tmp_path: Path) -> None:
        """A file holding nothing but a torn first record is emptied before appending."""
        path = tmp_path / "out.jsonl"
        path.write_bytes(b'{"id":"a","ti')
        s = sink(path)
        await s.send([Event({"id": "a"}, b'{"id":"a"}')])
        await s.aclose()
        assert path.read_bytes() == b'{"id":"a"}\n'

    async def test_complete_file_untouched(self, tmp_path: Path) -> None:
        """A file ending in LF is appended to as is."""
        path = tmp_path / "out.jsonl"
        path.write_bytes(b'{"id":"a"}\n')
        s = sink(path)
        await s.send([Event({"id": "b"}, b'{"id":"b"}')])
        await s.aclose()
        assert path.read_bytes() == b'{"id":"a"}\n{"id":"b"}\n'


class TestHealthcheck:
    async def test_a_path_that_cannot_be_examined_is_a_sink_error(self, tmp_path: Path) -> None:
        """``Path.exists`` re-raises errors such as ENAMETOOLONG or EACCES (3.11): the health check
        says so as a ``TransientSinkError`` instead of letting a bare ``OSError`` out."""
        path = tmp_path / ("d" * 300) / "out.jsonl"
        with pytest.raises(TransientSinkError) as err:
            await sink(path).healthcheck()
        assert "cannot check" in str(err.value) and "File name too long" in str(err.value)
