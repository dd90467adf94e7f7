"""Log records: one record is one line, whatever a key or an error holds.

That a key cannot forge a line of the running daemon's log is proven end to end in
tests/system/test_daemon.py."""

from __future__ import annotations

import json
import logging
import sys

from replicator import logs


def test_plain_records_escape_control_characters_in_messages_and_tracebacks() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logs.setup("plain", "info")
        formatter = root.handlers[0].formatter
        assert formatter is not None
    finally:
        root.handlers[:], root.level = saved
    key = "a\nb\rc\x1bd\x85e\u2028f"
    try:
        raise ValueError(f"{key}: gone from the source")
    except ValueError:
        record = logging.getLogger("replicator.test").makeRecord(
            "replicator.test", logging.ERROR, __file__, 1, "handling %s failed", (key,),
            sys.exc_info())
    text = formatter.format(record)
    assert len(text.splitlines()) == 1, text
    assert "handling a\\nb\\rc\\x1bd\\x85e\\u2028f failed" in text
    assert "ValueError: a\\nb" in text, "the traceback is kept, on the same line"
    # Already-escaped text (key=%r) is not escaped twice.
    record = logging.LogRecord("replicator.test", logging.INFO, __file__, 1, "key=%r", (key,), None)
    assert formatter.format(record).endswith(f"key={key!r}")
    # JSON lines are one line too, and still decode to the key.
    record = logging.LogRecord("replicator.test", logging.INFO, __file__, 1, "copied", (), None)
    record.key = key
    line = logs.JsonFormatter().format(record)
    assert len(line.splitlines()) == 1 and json.loads(line)["key"] == key, line
