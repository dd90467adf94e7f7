"""testing.copylog, the lag benchmark's reader of ``--log-format json`` logs: the records
the scheduler and the service really write, parsed back into copies with their times."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from replicator.logs import JsonFormatter
from replicator.model import Change, Kind, Outcome, RegionResult
from replicator.scheduler import _log_result
from testing.copylog import CopyLog

#: Keys a regex over the plain line had to unescape: quotes of both kinds, a line break,
#: a separator that ends a line elsewhere, a control character, non-ASCII.
KEYS = ["plain/0001", "it's \"quoted\"", "two\nlines", "para\u2028graph", "bell\x07", "café/ü"]


def _records(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The captured records as the daemon writes them: one JSON object per line."""
    formatter = JsonFormatter()
    return [formatter.format(r) for r in caplog.records]


def test_copies_starts_and_times_come_from_the_json_records(
        caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    caplog.set_level(logging.INFO, logger="replicator")
    logging.getLogger("replicator.service").info(
        "replicating %s to %s; status on http://%s/status", "src", "eu-west-1 (b)", "127.0.0.1:1")
    for key in KEYS:
        _log_result(Change(key, Kind.PUT), RegionResult("eu-west-1", Outcome.COPIED, 4096), 0.012)
    _log_result(Change(KEYS[0], Kind.PUT), RegionResult("us-east-1", Outcome.SKIPPED), 0.001)
    _log_result(Change(KEYS[1], Kind.PUT), RegionResult(
        "us-east-1", Outcome.FAILED, reason="throttled", error="SlowDown"), 0.5)
    _log_result(Change(KEYS[2], Kind.DELETE), RegionResult("us-east-1", Outcome.DELETED), 0.002)
    lines = _records(caplog)
    assert all("\n" not in line for line in lines)

    path = tmp_path / "replica-1.log"
    log = CopyLog(path)
    path.write_text(lines[0] + "\n" + lines[1][:20], encoding="utf-8")
    log.read()
    assert log.started and not log.copies  # the second record is not complete yet
    with path.open("a", encoding="utf-8") as out:
        out.write(lines[1][20:] + "\n" + "\n".join(
            ["Traceback (most recent call last):", "  not a record", "[1, 2]", *lines[2:]]) + "\n")
    log.read()

    created = {(getattr(r, "key"), getattr(r, "region")): r.created  # noqa: B009  # extra= fields
               for r in caplog.records if hasattr(r, "key")}
    assert {k: [o for _, o in v] for k, v in log.copies.items()} == {
        **{(key, "eu-west-1"): ["copied"] for key in KEYS},
        (KEYS[0], "us-east-1"): ["skipped"],
        (KEYS[1], "us-east-1"): ["failed"],
    }  # the delete is no copy
    for pair, [(when, _)] in log.copies.items():
        assert created[pair] - 0.001 < when <= created[pair] + 1e-6  # milliseconds, UTC


def test_a_log_without_the_start_record_has_not_started(tmp_path: Path) -> None:
    log = CopyLog(tmp_path / "unused.log")
    log.take(['{"time": "2026-01-01T00:00:00.000Z", "level": "info", "logger": "replicator.cli", '
              '"message": "replicating is what this line talks about"}', "replicating x to y"])
    assert not log.started and not log.copies
