"""Logging setup (called from the CLI only): JSON lines off a TTY, readable key=value text on one.

Components log with ``extra={...}`` key/value fields. Values are rendered with ``str``; secrets never
reach a log call because configuration keeps them as ``SecretStr`` (which renders as ``**********``).
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
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


class RepeatFilter(logging.Filter):
    """Rate-limits identical messages: the same (logger, message, error) at most once per ``window`` secs."""

    def __init__(self, window_secs: float = 60.0) -> None:
        super().__init__()
        self.window = window_secs
        self._last: dict[tuple[str, str, str], float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (
            record.name,
            record.msg if isinstance(record.msg, str) else "",
            str(getattr(record, "error", "")),
        )
        last = self._last.get(key)
        if last is not None and record.created - last < self.window:
            return False
        if len(self._last) > 10_000:
            self._last.clear()
        self._last[key] = record.created
        return True


def configure(level: str, fmt: str, stream: TextIO | None = None) -> None:
    """Install the root handler. ``fmt``: ``auto`` (text on a TTY, else JSON), ``json`` or ``text``."""
    out = stream if stream is not None else sys.stderr
    use_text = fmt == "text" or (fmt == "auto" and out.isatty())
    handler = logging.StreamHandler(out)
    handler.setFormatter(TextFormatter() if use_text else JsonFormatter())
    handler.addFilter(RepeatFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("msal", "urllib3", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
