"""A replicator's ``--log-format json`` log read back: its start and each verified copy.

One record per line; a per-copy record (fields ``op``, ``key``, ``region``,
``outcome``; ``time`` in UTC to the millisecond) is written once the copy is verified.
The lag benchmark times copies by these, independently of the daemon's own lag metric.
"""

from __future__ import annotations

import collections
import datetime
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Who writes the per-copy records (replicator/scheduler.py) and the one that says the
#: daemon is running (replicator/service.py).
COPIER, SERVICE = "replicator.scheduler", "replicator.service"



def record(line: str) -> dict[str, Any] | None:
    """One JSON log record, or None for a line that is not one (a traceback or message the
    daemon wrote around its logging, before it set the format up or after it stopped)."""
    try:
        found = json.loads(line)
    except json.JSONDecodeError:
        return None
    return found if isinstance(found, dict) else None


def timestamp(text: str) -> float:
    """Seconds since the epoch of a record's ``time`` (RFC 3339, UTC, milliseconds)."""
    return datetime.datetime.fromisoformat(text).timestamp()


@dataclass(frozen=True)
class Copy:
    """One per-copy record of a PUT: ``outcome`` is copied, skipped or failed."""

    key: str
    region: str
    when: float
    outcome: str

    @classmethod
    def of(cls, rec: dict[str, Any]) -> Copy | None:
        """The copy a record reports, or None for any other record (deletes included)."""
        if rec.get("logger") != COPIER or rec.get("op") != "put" or "outcome" not in rec:
            return None
        return cls(rec["key"], rec["region"], timestamp(rec["time"]), rec["outcome"])


def started(rec: dict[str, Any]) -> bool:
    """The record the daemon writes once it has checked its regions and starts replicating."""
    return rec.get("logger") == SERVICE and str(rec.get("message", "")).startswith("replicating ")


class CopyLog:
    """One daemon's per-copy records, read as the log grows."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.started = False
        self.copies: dict[tuple[str, str], list[tuple[float, str]]] = collections.defaultdict(list)

    def read(self) -> None:
        with self.path.open("rb") as fh:
            fh.seek(self.offset)
            chunk = fh.read()
        complete = chunk.rfind(b"\n") + 1  # a line still being written waits for the next read
        self.offset += complete
        self.take(chunk[:complete].decode(errors="replace").splitlines())

    def take(self, lines: list[str]) -> None:
        """Take in complete log lines: the start and every copy among them."""
        for line in lines:
            rec = record(line)
            if rec is None:
                continue
            self.started = self.started or started(rec)
            copy = Copy.of(rec)
            if copy is not None:
                self.copies[copy.key, copy.region].append((copy.when, copy.outcome))
