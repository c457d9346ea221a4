"""Logging setup (called from the CLI only): JSON lines off a TTY, readable key=value text on one.

Components log with ``extra={...}`` key/value fields. With ``log.path`` set, lines go to that file
instead of stderr (always JSON unless ``format = "text"``), and ``reopen`` (SIGHUP) reopens it after
logrotate moved it. Values are rendered with ``str``; secrets never
reach a log call because configuration keeps them as ``SecretStr`` (which renders as ``**********``).
"""

from __future__ import annotations

import io
import logging
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import orjson

_STD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "taskName"}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and every extra field."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        doc.update(_fields(record))
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


class TextFormatter(logging.Formatter):
    """``HH:MM:SS LEVEL message key=value …`` for humans at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S")
        extras = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        line = f"{stamp} {record.levelname:<7} {record.getMessage()}" + (f" {extras}" if extras else "")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


#: Fields that say *what* failed: the same message about another sink or stream is not a repeat.
_IDENTITY = ("error", "sink", "stream", "source", "tenant", "component")


_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


class RepeatFilter(logging.Filter):
    """Rate-limits identical warnings and errors: the same (logger, message, error, sink, stream, source,
    tenant, component) at most once per ``window`` seconds. Info and debug lines always pass."""

    def __init__(self, window_secs: float = 60.0) -> None:
        super().__init__()
        self.window = window_secs
        self._last: dict[tuple[str, str, str], float] = {}
        #: Lines held back so far (exported as ``siem_agent_log_lines_suppressed_total``).
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (
            record.name,
            record.msg if isinstance(record.msg, str) else "",
            # Per-request ids (Graph request-id, client-request-id) make every error text unique; two
            # failures that differ only in them are the same failure for rate limiting.
            _UUID.sub("<id>", "|".join(str(getattr(record, f, "")) for f in _IDENTITY)),
        )
        last = self._last.get(key)
        if last is not None and record.created - last < self.window:
            self.suppressed += 1
            return False
        if len(self._last) > 10_000:
            self._last.clear()
        self._last[key] = record.created
        return True


class ReopeningFileHandler(logging.FileHandler):
    """Appends to a file, created with mode 0640 (less the umask, never more, whatever the umask);
    ``reopen`` switches to a fresh file."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, mode="a", encoding="utf-8", delay=False)

    def _open(self) -> io.TextIOWrapper:
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        return open(fd, "a", encoding="utf-8")

    def reopen(self) -> None:
        self.acquire()
        try:
            old, self.stream = self.stream, self._open()
            if old is not None:
                old.close()
        finally:
            self.release()


@dataclass(frozen=True, slots=True)
class LogControl:
    """What the agent needs from the installed logging: the SIGHUP reopen hook, the suppressed count."""

    reopen: Callable[[], None]
    suppressed: Callable[[], int]


def configure(level: str, fmt: str, stream: TextIO | None = None, path: Path | None = None) -> LogControl:
    """Install the root handler; return its controls (``reopen`` is a no-op without a log file).

    ``fmt``: ``auto`` (text on a TTY, else JSON), ``json`` or ``text``. Raises ``OSError`` when ``path``
    cannot be opened.
    """
    out = stream if stream is not None else sys.stderr
    handler: logging.Handler
    reopen: Callable[[], None] = _nothing
    if path is not None:
        file_handler = ReopeningFileHandler(path)
        handler, reopen = file_handler, file_handler.reopen
        use_text = fmt == "text"
    else:
        handler = logging.StreamHandler(out)
        use_text = fmt == "text" or (fmt == "auto" and out.isatty())
    handler.setFormatter(TextFormatter() if use_text else JsonFormatter())
    repeats = RepeatFilter()
    handler.addFilter(repeats)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("msal", "urllib3", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Write-back audit lines (info) are written whatever log.level says (agent.writeback.audit).
    logging.getLogger("agent.writeback.audit").setLevel(logging.INFO)
    return LogControl(reopen, lambda: repeats.suppressed)


def _nothing() -> None:
    return None
