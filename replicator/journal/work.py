"""The work queue: one row per (key, region) not yet verified, with its attempts and next try.

A row is written before any copy starts and leaves only when its copy is
proven (``finish``), so a kill -9 at any instant loses nothing. The scheduler
takes due rows from here and records every outcome back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..model import Change, Kind
from .core import UPSERT, Slice, on_journal_thread


@dataclass(frozen=True, slots=True)
class Pending:
    """One (key, region) row that is not yet verified."""

    change: Change
    region: str
    attempts: int
    state: str
    next_try: float
    reason: str | None
    error: str | None
    fresh: bool = False


def pending_from_row(row: tuple[Any, ...]) -> Pending:
    """A ``pending`` table row (``SELECT *``) as a value."""
    (key, region, kind, etag, size, mtime, version_id, origin, attempts, next_try, state,
     reason, error, fresh) = row
    change = Change(key=key, kind=Kind(kind), etag=etag, size=size, last_modified=mtime,
                    version_id=version_id, origin=origin)
    return Pending(change, region, attempts, state, next_try, reason, error, bool(fresh))


class Work(Slice):
    """The pending rows: queue, hand out, finish or postpone them."""

    @on_journal_thread
    def enqueue(self, change: Change, regions: Iterable[str]) -> None:
        """Queue a change for regions, replacing any older pending change of that key."""
        rows = [(change.key, r, change.kind.value, change.etag, change.size, change.last_modified,
                 change.version_id, change.origin or time.time(), time.time(), 0) for r in regions]
        with self.tx():
            self.db.executemany(UPSERT, rows)

    @on_journal_thread
    def backfill(self, region: str, wants: Callable[[str], bool]) -> int:
        """Queue every listed source object for a region added to a running service."""
        now = time.time()
        with self.tx():
            rows = [(key, region, Kind.PUT.value, etag, size, mtime, None, now, now, 0)
                    for key, etag, size, mtime in self.db.execute("SELECT * FROM listing")
                    if wants(key)]
            self.db.executemany(UPSERT, rows)
        return len(rows)

    @on_journal_thread
    def forget_region(self, region: str) -> int:
        """Drop the work of a region removed from the config."""
        with self.tx():
            return self.db.execute("DELETE FROM pending WHERE region = ?", (region,)).rowcount

    async def due(self, now: float, limit: int, regions: set[str],
                  busy: set[tuple[str, str]]) -> list[Pending]:
        """Rows of ``regions`` whose next try has come, oldest first, minus (key, region) in ``busy``."""
        return await self._due(now, limit, regions, busy) if regions else []

    @on_journal_thread
    def _due(self, now: float, limit: int, regions: set[str],
             busy: set[tuple[str, str]]) -> list[Pending]:
        marks = ",".join("?" * len(regions))
        rows = self.db.execute(f"SELECT * FROM pending WHERE next_try <= ? AND region IN ({marks}) "
                               "ORDER BY next_try LIMIT ?",
                               (now, *regions, limit + len(busy))).fetchall()
        return [p for p in map(pending_from_row, rows) if (p.change.key, p.region) not in busy][:limit]

    async def dispatched(self, rows: list[Pending]) -> None:
        """Rows handed to the copier are no longer fresh: after a crash, probe before copying."""
        fresh = [(r.change.key, r.region) for r in rows if r.fresh]
        if fresh:
            await self._not_fresh(fresh)

    @on_journal_thread
    def _not_fresh(self, rows: list[tuple[str, str]]) -> None:
        with self.tx():
            self.db.executemany("UPDATE pending SET fresh = 0 WHERE key = ? AND region = ?", rows)

    @on_journal_thread
    def revive(self, region: str) -> int:
        """A region is back: everything it was waiting for is due now, failed rows included
        (archived sources excepted: the region was not what held them)."""
        with self.tx():
            return self.db.execute("UPDATE pending SET next_try = ?, state = 'pending' "
                                   "WHERE region = ? AND reason IS NOT 'archived'",
                                   (time.time(), region)).rowcount

    @on_journal_thread
    def note_region(self, region: str, reason: str, error: str) -> None:
        """Stamp a region's waiting rows with why the region is out of service."""
        with self.tx():
            self.db.execute("UPDATE pending SET reason = ?, error = ? WHERE region = ? "
                            "AND (reason IS NULL OR reason != ?)",
                            (reason, error[:2000], region, reason))

    @on_journal_thread
    def fail_region(self, region: str, reason: str, error: str) -> None:
        """Mark every row of a region that is out of service as failed, with the cause."""
        with self.tx():
            self.db.execute("UPDATE pending SET state = 'failed', reason = ?, error = ? "
                            "WHERE region = ?", (reason, error[:2000], region))

    @on_journal_thread
    def retry_failed(self, region: str | None = None, key: str | None = None) -> int:
        """Make failed rows due now, with fresh attempts (``replicator retry``)."""
        sql = "UPDATE pending SET next_try = ?, state = 'pending', attempts = 0 " \
              "WHERE state = 'failed'"
        args: list[object] = [time.time()]
        if region is not None:
            sql, args = sql + " AND region = ?", [*args, region]
        if key is not None:
            sql, args = sql + " AND key = ?", [*args, key]
        with self.tx():
            return self.db.execute(sql, args).rowcount

    @on_journal_thread
    def next_try(self) -> float | None:
        next_try: float | None = self.db.execute("SELECT min(next_try) FROM pending").fetchone()[0]
        return next_try

    @on_journal_thread
    def finish(self, row: Pending) -> bool:
        """Remove a verified row, unless a newer change of that key replaced it meanwhile."""
        with self.tx():
            cur = self.db.execute(
                "DELETE FROM pending WHERE key = ? AND region = ? AND kind = ? AND etag = ?",
                (row.change.key, row.region, row.change.kind.value, row.change.etag))
        return cur.rowcount > 0

    @on_journal_thread
    def postpone(self, row: Pending, *, reason: str, error: str, next_try: float,
                 failed: bool) -> None:
        """Record a failed attempt; the row stays, to be tried again at ``next_try``."""
        with self.tx():
            self.db.execute(
                "UPDATE pending SET attempts = attempts + 1, next_try = ?, state = ?, "
                "reason = ?, error = ? WHERE key = ? AND region = ? AND kind = ? AND etag = ?",
                (next_try, "failed" if failed else "pending", reason, error[:2000],
                 row.change.key, row.region, row.change.kind.value, row.change.etag))

    @on_journal_thread
    def count(self, *, state: str | None = None, regions: set[str] | None = None) -> int:
        sql, args = "SELECT count(*) FROM pending WHERE 1", []
        if state:
            sql, args = sql + " AND state = ?", [state]
        if regions is not None:
            sql += f" AND region IN ({','.join('?' * len(regions))})"
            args += sorted(regions)
        count: int = self.db.execute(sql, args).fetchone()[0]
        return count

    @on_journal_thread
    def pending_keys(self, region: str) -> set[str]:
        return {k for (k,) in self.db.execute("SELECT key FROM pending WHERE region = ?", (region,))}
