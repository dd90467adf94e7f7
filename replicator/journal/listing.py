"""The last source listing, the one being taken, and the delete guard's held deletes.

A listing is staged page by page and adopted only once complete, so a listing
that fails part-way never turns into deletes. Deletes wait in ``held_deletes``
until the guard (or an operator) lets them through.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from ..model import Kind, Listed
from .core import UPSERT, Slice, on_journal_thread

#: ``guard(deletes, listed_before, listed_now)``: may this many deletes go ahead?
DeleteGuard = Callable[[int, int, int], bool]


@dataclass(frozen=True, slots=True)
class Diff:
    """What one complete listing changed."""

    puts: int
    deletes: int
    listed: int
    held: int = 0


class Listing(Slice):
    """Source listings in, queued puts and guarded deletes out."""

    @on_journal_thread
    def begin_listing(self) -> None:
        self.db.execute("DELETE FROM listing_new")

    async def abandon_listing(self) -> None:
        await self.begin_listing()

    @on_journal_thread
    def stage(self, entries: list[Listed]) -> None:
        """Keep one page of a listing in progress (not yet trusted)."""
        with self.tx():
            self.db.executemany(
                "INSERT OR REPLACE INTO listing_new VALUES (?, ?, ?, ?)",
                [(e.key, e.etag, e.size, e.last_modified) for e in entries])

    @on_journal_thread
    def commit_listing(self, regions: list[str], wants: Callable[[str], bool],
                       replicate_deletes: bool, guard: DeleteGuard, trusted: bool = True) -> Diff:
        """Adopt the staged listing as complete, queueing every difference for every region.

        Only a listing that finished is committed, so a listing that fails part-way
        never turns into deletes. Deletes go through the delete guard: a pass that
        would delete more than it allows holds them until an operator approves.
        ``trusted``: the previous listing is the replicas' state (poll mode), so a
        changed key is copied without probing its replicas first.
        """
        now = time.time()
        db = self.db
        with self.tx():
            before = db.execute("SELECT count(*) FROM listing").fetchone()[0]
            puts = 0
            for key, etag, size, mtime in db.execute(
                    "SELECT n.key, n.etag, n.size, n.last_modified FROM listing_new n "
                    "LEFT JOIN listing o ON o.key = n.key "
                    "WHERE o.key IS NULL OR o.etag != n.etag OR o.size != n.size"):
                if wants(key):
                    puts += 1
                    origin = min(mtime, now) if before else now  # a backfill counts from now
                    db.executemany(UPSERT, [(key, r, Kind.PUT.value, etag, size, mtime, None,
                                             origin, now, int(trusted and before > 0))
                                            for r in regions])
            if replicate_deletes:
                db.executemany("INSERT OR IGNORE INTO held_deletes VALUES (?, ?)", (
                    (key, now) for (key,) in db.execute(
                        "SELECT o.key FROM listing o LEFT JOIN listing_new n ON n.key = o.key "
                        "WHERE n.key IS NULL") if wants(key)))
            # A key that is back at the source is no longer a delete.
            db.execute("DELETE FROM held_deletes WHERE key IN (SELECT key FROM listing_new)")
            listed = db.execute("SELECT count(*) FROM listing_new").fetchone()[0]
            db.execute("DROP TABLE listing")
            db.execute("ALTER TABLE listing_new RENAME TO listing")
            db.execute("CREATE TABLE listing_new (key TEXT PRIMARY KEY, etag TEXT NOT NULL, "
                       "size INTEGER NOT NULL, last_modified REAL NOT NULL) WITHOUT ROWID")
            held = db.execute("SELECT count(*) FROM held_deletes").fetchone()[0]
            deletes = 0
            if held and guard(held, before, listed):
                deletes, held = self._release_held(regions), 0
        return Diff(puts, deletes, listed, held)

    def _release_held(self, regions: list[str]) -> int:
        """Queue every held delete for every region (inside a transaction)."""
        rows = self.db.execute("SELECT key, seen FROM held_deletes").fetchall()
        self.db.executemany(UPSERT, [(key, r, Kind.DELETE.value, "", 0, seen, None, seen, seen, 0)
                                     for key, seen in rows for r in regions])
        self.db.execute("DELETE FROM held_deletes")
        return len(rows)

    @on_journal_thread
    def hold_deletes(self, keys: list[str]) -> None:
        """Put deletes found outside a listing (an audit's extra objects) behind the guard."""
        with self.tx():
            now = time.time()
            self.db.executemany("INSERT OR IGNORE INTO held_deletes VALUES (?, ?)",
                                [(k, now) for k in keys])

    @on_journal_thread
    def release_deletes(self, regions: list[str], guard: DeleteGuard | None = None) -> int:
        """Queue held deletes: all of them (an operator approved), or if the guard allows."""
        with self.tx():
            held = self.db.execute("SELECT count(*) FROM held_deletes").fetchone()[0]
            listed = self.db.execute("SELECT count(*) FROM listing").fetchone()[0]
            if not held or (guard is not None and not guard(held, listed + held, listed)):
                return 0
            return self._release_held(regions)

    @on_journal_thread
    def held_deletes(self) -> int:
        held: int = self.db.execute("SELECT count(*) FROM held_deletes").fetchone()[0]
        return held
