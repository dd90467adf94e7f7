"""Logging: one fixed line shape, plain for people or JSON for log pipelines."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

#: ``extra=`` fields that JSON lines carry as their own keys.
FIELDS = ("op", "key", "region", "bytes", "duration", "outcome", "reason")

#: What can end a line or drive a terminal: C0 and C1 controls, DEL, U+2028/U+2029.
_BREAKS = (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029)
#: Plain lines escape them as repr() does (``\n``, ``\x1b``, ``\u2028``), so a key holding one
#: cannot end its record early and forge the next; text already escaped by ``%r`` stays as is.
_PLAIN_ESCAPES = {c: repr(chr(c))[1:-1] for c in _BREAKS}
#: JSON lines: json.dumps escapes C0 itself; the others become ``\uXXXX``, still valid JSON.
_JSON_ESCAPES = {c: f"\\u{c:04x}" for c in _BREAKS if c >= 0x7F}


class PlainFormatter(logging.Formatter):
    """``time level logger: message``, one line per record, tracebacks included."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).translate(_PLAIN_ESCAPES)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            # RFC 3339 in UTC with milliseconds: pipelines order and time copies under a second.
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        out.update({f: getattr(record, f) for f in FIELDS if getattr(record, f, None) is not None})
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False).translate(_JSON_ESCAPES)


def level_number(name: str) -> int:
    """The logging level called ``name`` (any case); ValueError naming the choices if none is."""
    levels = logging.getLevelNamesMapping()
    if name.upper() not in levels or name.upper() == "NOTSET":
        choices = ", ".join(n.lower() for n in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"))
        raise ValueError(f"--log-level {name!r}: unknown level, expected one of {choices}")
    return levels[name.upper()]


def setup(fmt: str = "plain", level: str = "INFO") -> None:
    """Send every record to stderr in ``fmt``; ValueError (before any change) on a bad level."""
    number = level_number(level)
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(PlainFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(number)
    for noisy in ("botocore", "aiobotocore", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
