"""Logging: readable lines or JSON, to stderr or a rotated file; the server
process's records carried into the portal's log.

- ``text``: ``2026-12-02 07:15:00,123 INFO trio_mud.portal: sessid 3: ...``;
  a record from a server process shows its pid: ``[server 4242]``.
- ``json``: one object per line, ``{"time", "level", "logger", "sessid",
  "address", "message"}`` (and ``"exception"``, ``"server_pid"`` when they
  apply): what log shippers read without a parser of their own.

A server process always writes its records as JSON lines on stderr
(:class:`RecordLine`); the portal reads them back into records
(:func:`record_from_line`) so that they go through the portal's own
handlers, format and file.

No log line, at any level, holds what a client sent (passwords are typed
text): the portal and handler log a message by kind, session and command
only (:func:`trio_mud.messages.describe`).
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import re
import sys
import time
from collections.abc import Callable
from typing import Any

from .settings import Settings

__all__ = ["JsonFormatter", "RecordLine", "TextFormatter", "configure", "record_from_line"]

_SESSID = re.compile(r"^sessid (\d+)")

#: Finds a session's address by its sessid (the portal sets this).
AddressLookup = Callable[[int], str | None]


def _sessid(record: logging.LogRecord) -> int | None:
    """The session a record is about: its ``sessid`` extra, or its message's start."""
    sessid = getattr(record, "sessid", None)
    if isinstance(sessid, int):
        return sessid
    match = _SESSID.match(record.getMessage())
    return int(match.group(1)) if match else None


class TextFormatter(logging.Formatter):
    """One readable line; a server process's records show its pid."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        pid = getattr(record, "server_pid", None)
        if pid is not None:
            stamp = self.formatTime(record)
            line = f"{stamp} [server {pid}]{line[len(stamp) :]}"
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, sessid, address, message."""

    def __init__(self, addresses: AddressLookup | None = None) -> None:
        super().__init__()
        self.addresses = addresses

    def format(self, record: logging.LogRecord) -> str:
        sessid = _sessid(record)
        address = getattr(record, "address", None)
        if address is None and sessid is not None and self.addresses is not None:
            address = self.addresses(sessid)
        entry: dict[str, Any] = {
            "time": _iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "sessid": sessid,
            "address": address,
            "message": record.getMessage(),
        }
        pid = getattr(record, "server_pid", None)
        if pid is not None:
            entry["server_pid"] = pid
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


def _iso(created: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}Z"


class RecordLine(logging.Formatter):
    """A server process's record as a JSON line for the portal to read back."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "name": record.name,
            "levelno": record.levelno,
            "levelname": record.levelname,
            "msg": record.getMessage(),
            "created": record.created,
            "server_pid": os.getpid(),
        }
        if record.exc_info:
            entry["exc_text"] = self.formatException(record.exc_info)
        sessid = _sessid(record)
        if sessid is not None:
            entry["sessid"] = sessid
        return "\x1e" + json.dumps(entry, ensure_ascii=False)


def record_from_line(line: str) -> logging.LogRecord | None:
    """The record a server process wrote as ``line``, or None if it is not one."""
    if not line.startswith("\x1e"):
        return None
    try:
        entry = json.loads(line[1:])
        if not isinstance(entry, dict):
            return None
        return logging.makeLogRecord({str(k): v for k, v in entry.items()} | {"args": None})
    except ValueError:
        return None


def configure(settings: Settings, *, addresses: AddressLookup | None = None) -> logging.Handler:
    """Log as ``settings`` say (level, format, file); the handler installed.

    Replaces whatever handlers the root logger had.
    """
    handler: logging.Handler
    if settings.log_file is not None:
        settings.log_file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(
            settings.log_file,
            maxBytes=settings.log_file_max_bytes,
            backupCount=settings.log_file_backups,
            encoding="utf-8",
        )
    else:
        handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter(addresses))
    else:
        handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    return handler


def configure_server_process(level: str) -> None:
    """A server process's logging: every record as a JSON line on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RecordLine())
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
