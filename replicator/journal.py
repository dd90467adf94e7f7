"""The journal: durable pending work in SQLite (WAL).

It holds the last complete source listing and one row per (key, region) that
is not yet verified. A change is written here before any copy starts, and a
row leaves only when its copy is proven, so a kill -9 at any instant loses
nothing. All SQLite work runs on one private thread: the event loop never
blocks on disk, and the connection is never shared between threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from .errors import ReplicatorError
from .model import Change, Kind, Listed

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS listing (
    key TEXT PRIMARY KEY, etag TEXT NOT NULL, size INTEGER NOT NULL, last_modified REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS listing_new (
    key TEXT PRIMARY KEY, etag TEXT NOT NULL, size INTEGER NOT NULL, last_modified REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pending (
    key TEXT NOT NULL,
    region TEXT NOT NULL,
    kind TEXT NOT NULL,              -- put | delete
    etag TEXT NOT NULL,
    size INTEGER NOT NULL,
    last_modified REAL NOT NULL,     -- source write time (delete: when it was seen gone)
    version_id TEXT,
    origin REAL NOT NULL,            -- lag counts from here: the oldest unreplicated source write
                                     -- (for the first backfill: when the object was first listed)
    attempts INTEGER NOT NULL DEFAULT 0,
    next_try REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',   -- pending | failed
    reason TEXT,
    error TEXT,
    fresh INTEGER NOT NULL DEFAULT 0,  -- seen changing by the feed and never tried: the replica,
                                       -- if any, is an older copy of ours, so no need to probe it
    PRIMARY KEY (key, region)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS pending_next_try ON pending (next_try);
CREATE TABLE IF NOT EXISTS held_deletes (
    key TEXT PRIMARY KEY, seen REAL NOT NULL      -- deletes waiting for the guard or an operator
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (       -- SQS messages received, deleted once their key is done
    id TEXT PRIMARY KEY, receipt TEXT NOT NULL, key TEXT NOT NULL, received REAL NOT NULL,
    extended REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_key ON messages (key);
CREATE TABLE IF NOT EXISTS sequencers (     -- newest S3 event sequencer applied, per key
    key TEXT PRIMARY KEY, sequencer TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dead_letters (   -- event messages that could not be understood
    id TEXT PRIMARY KEY, body TEXT NOT NULL, reason TEXT NOT NULL, at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS health (         -- endpoints out of service, as the daemon last saw
    name TEXT PRIMARY KEY, problem TEXT NOT NULL, at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS uploads (
    region TEXT NOT NULL, key TEXT NOT NULL, upload_id TEXT NOT NULL, started REAL NOT NULL,
    PRIMARY KEY (region, upload_id)
);
"""

_UPSERT = """
INSERT INTO pending (key, region, kind, etag, size, last_modified, version_id, origin, next_try,
                     fresh)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (key, region) DO UPDATE SET
    kind = excluded.kind, etag = excluded.etag, size = excluded.size,
    last_modified = excluded.last_modified, version_id = excluded.version_id,
    origin = min(pending.origin, excluded.origin), attempts = 0,
    next_try = excluded.next_try, state = 'pending', reason = NULL, error = NULL,
    fresh = excluded.fresh
"""
#: The same, but an identical change already queued keeps its attempts and back-off
#: (a redelivered event must not restart a failing item's retries).
_UPSERT_NEW = _UPSERT.rstrip() + " WHERE pending.kind != excluded.kind OR pending.etag != excluded.etag"
SCHEMA_VERSION = 4


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


#: ``guard(deletes, listed_before, listed_now)``: may this many deletes go ahead?
DeleteGuard = Callable[[int, int, int], bool]


@dataclass(frozen=True, slots=True)
class Diff:
    """What one complete listing changed."""

    puts: int
    deletes: int
    listed: int
    held: int = 0


@dataclass(frozen=True, slots=True)
class RegionBacklog:
    region: str
    pending: int
    failed: int
    bytes: int
    oldest_origin: float | None


class Journal:
    """Async front of the SQLite journal; every method runs on the journal's thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")
        self._db: sqlite3.Connection | None = None

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    @property
    def db(self) -> sqlite3.Connection:
        assert self._db is not None, "journal is not open"
        return self._db

    async def open(self) -> Journal:
        def connect() -> None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            # NORMAL survives a process crash in WAL mode; after a power loss the
            # last transactions may be redone, which every write here tolerates.
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=10000")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            used = db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'pending'").fetchone()[0]
            if used and version != SCHEMA_VERSION:
                db.close()
                raise ReplicatorError(f"journal {self.path} has schema {version}, this version uses "
                                      f"{SCHEMA_VERSION}: move it aside (its work is re-found by the "
                                      "first listing and the replica markers)", reason="journal")
            db.executescript(SCHEMA)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            # One region's listing while an inventory is taken; never needed after a restart.
            db.execute("CREATE TEMP TABLE inventory (key TEXT PRIMARY KEY) WITHOUT ROWID")
            self._db = db
        await self._run(connect)
        return self

    async def close(self) -> None:
        if self._db is not None:
            await self._run(self.db.close)
            self._db = None
        self._pool.shutdown(wait=True)

    # -- the listing ---------------------------------------------------------

    async def begin_listing(self) -> None:
        await self._run(self.db.execute, "DELETE FROM listing_new")

    async def stage(self, entries: list[Listed]) -> None:
        """Keep one page of a listing in progress (not yet trusted)."""
        def insert() -> None:
            with self._tx():
                self.db.executemany(
                    "INSERT OR REPLACE INTO listing_new VALUES (?, ?, ?, ?)",
                    [(e.key, e.etag, e.size, e.last_modified) for e in entries])
        await self._run(insert)

    async def commit_listing(self, regions: list[str], wants: Callable[[str], bool],
                             replicate_deletes: bool, guard: DeleteGuard,
                             trusted: bool = True) -> Diff:
        """Adopt the staged listing as complete, queueing every difference for every region.

        Only a listing that finished is committed, so a listing that fails part-way
        never turns into deletes. Deletes go through the delete guard: a pass that
        would delete more than it allows holds them until an operator approves.
        ``trusted``: the previous listing is the replicas' state (poll mode), so a
        changed key is copied without probing its replicas first.
        """
        def commit() -> Diff:
            now = time.time()
            db = self.db
            with self._tx():
                before = db.execute("SELECT count(*) FROM listing").fetchone()[0]
                puts = 0
                for key, etag, size, mtime in db.execute(
                        "SELECT n.key, n.etag, n.size, n.last_modified FROM listing_new n "
                        "LEFT JOIN listing o ON o.key = n.key "
                        "WHERE o.key IS NULL OR o.etag != n.etag OR o.size != n.size"):
                    if wants(key):
                        puts += 1
                        origin = min(mtime, now) if before else now  # a backfill counts from now
                        db.executemany(_UPSERT, [(key, r, Kind.PUT.value, etag, size, mtime, None,
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
        return await self._run(commit)

    def _release_held(self, regions: list[str]) -> int:
        """Queue every held delete for every region (inside a transaction)."""
        rows = self.db.execute("SELECT key, seen FROM held_deletes").fetchall()
        self.db.executemany(_UPSERT, [(key, r, Kind.DELETE.value, "", 0, seen, None, seen, seen, 0)
                                      for key, seen in rows for r in regions])
        self.db.execute("DELETE FROM held_deletes")
        return len(rows)

    async def hold_deletes(self, keys: list[str]) -> None:
        """Put deletes found outside a listing (an audit's extra objects) behind the guard."""
        def insert() -> None:
            with self._tx():
                now = time.time()
                self.db.executemany("INSERT OR IGNORE INTO held_deletes VALUES (?, ?)",
                                    [(k, now) for k in keys])
        await self._run(insert)

    async def release_deletes(self, regions: list[str], guard: DeleteGuard | None = None) -> int:
        """Queue held deletes: all of them (an operator approved), or if the guard allows."""
        def release() -> int:
            with self._tx():
                held = self.db.execute("SELECT count(*) FROM held_deletes").fetchone()[0]
                listed = self.db.execute("SELECT count(*) FROM listing").fetchone()[0]
                if not held or (guard is not None and not guard(held, listed + held, listed)):
                    return 0
                return self._release_held(regions)
        return await self._run(release)

    async def held_deletes(self) -> int:
        return await self._run(lambda: self.db.execute(
            "SELECT count(*) FROM held_deletes").fetchone()[0])

    async def retry_failed(self, region: str | None = None, key: str | None = None) -> int:
        """Make failed rows due now, with fresh attempts (``replicator retry``)."""
        def update() -> int:
            sql = "UPDATE pending SET next_try = ?, state = 'pending', attempts = 0 " \
                  "WHERE state = 'failed'"
            args: list[object] = [time.time()]
            if region is not None:
                sql, args = sql + " AND region = ?", [*args, region]
            if key is not None:
                sql, args = sql + " AND key = ?", [*args, key]
            with self._tx():
                return self.db.execute(sql, args).rowcount
        return await self._run(update)

    async def abandon_listing(self) -> None:
        await self.begin_listing()

    # -- pending work ----------------------------------------------------------

    async def enqueue(self, change: Change, regions: Iterable[str]) -> None:
        """Queue a change for regions, replacing any older pending change of that key."""
        rows = [(change.key, r, change.kind.value, change.etag, change.size, change.last_modified,
                 change.version_id, change.origin or time.time(), time.time(), 0) for r in regions]

        def upsert() -> None:
            with self._tx():
                self.db.executemany(_UPSERT, rows)
        await self._run(upsert)

    async def backfill(self, region: str, wants: Callable[[str], bool]) -> int:
        """Queue every listed source object for a region added to a running service."""
        def insert() -> int:
            now = time.time()
            with self._tx():
                rows = [(key, region, Kind.PUT.value, etag, size, mtime, None, now, now, 0)
                        for key, etag, size, mtime in self.db.execute("SELECT * FROM listing")
                        if wants(key)]
                self.db.executemany(_UPSERT, rows)
            return len(rows)
        return await self._run(insert)

    # -- region inventories (see inventory.py) ----------------------------------

    async def unprobed(self) -> tuple[int, dict[str, int]]:
        """Objects in the last listing, and per region the untried puts that would be probed."""
        def count() -> tuple[int, dict[str, int]]:
            listed = self.db.execute("SELECT count(*) FROM listing").fetchone()[0]
            rows = self.db.execute("SELECT region, count(*) FROM pending WHERE kind = ? AND fresh = 0 "
                                   "AND attempts = 0 GROUP BY region", (Kind.PUT.value,))
            return listed, dict(rows.fetchall())
        return await self._run(count)

    async def begin_inventory(self) -> None:
        await self._run(self.db.execute, "DELETE FROM inventory")

    async def stage_inventory(self, keys: list[str]) -> None:
        """Keep one page of a region's listing (a temporary table: nothing to recover)."""
        def insert() -> None:
            with self._tx():
                self.db.executemany("INSERT OR IGNORE INTO inventory VALUES (?)",
                                    [(k,) for k in keys])
        await self._run(insert)

    async def commit_inventory(self, region: str) -> int:
        """Mark the region's untried puts of keys it does not hold as needing no probe.

        Returns how many.
        """
        def update() -> int:
            with self._tx():
                spared = self.db.execute(
                    "UPDATE pending SET fresh = 1 WHERE region = ? AND kind = ? AND fresh = 0 "
                    "AND attempts = 0 AND key NOT IN (SELECT key FROM inventory)",
                    (region, Kind.PUT.value)).rowcount
            return spared
        return await self._run(update)

    async def forget_region(self, region: str) -> int:
        """Drop the work of a region removed from the config."""
        def delete() -> int:
            with self._tx():
                return self.db.execute("DELETE FROM pending WHERE region = ?", (region,)).rowcount
        return await self._run(delete)

    async def due(self, now: float, limit: int, regions: set[str],
                  busy: set[tuple[str, str]]) -> list[Pending]:
        """Rows of ``regions`` whose next try has come, oldest first, minus (key, region) in ``busy``."""
        def select() -> list[Pending]:
            marks = ",".join("?" * len(regions))
            rows = self.db.execute(f"SELECT * FROM pending WHERE next_try <= ? AND region IN ({marks}) "
                                   "ORDER BY next_try LIMIT ?",
                                   (now, *regions, limit + len(busy))).fetchall()
            return [p for p in map(_pending, rows) if (p.change.key, p.region) not in busy][:limit]
        return await self._run(select) if regions else []

    async def apply_events(self, changes: list[tuple[Change, str | None]], regions: list[str],
                           message: tuple[str, str] | None) -> int:
        """Queue changes from S3 events; returns how many were newer than what is known.

        A change whose sequencer is not above the key's newest one is stale and
        dropped. The listing is updated too, so the next sweep does not find
        these changes again. ``message`` (id, receipt) is remembered until every
        change of its keys is done.
        """
        def apply() -> int:
            now = time.time()
            db = self.db
            applied = 0
            with self._tx():
                if message is not None and db.execute(
                        "UPDATE messages SET receipt = ? WHERE id = ?", message[::-1]).rowcount:
                    return 0  # redelivered while its work is still under way
                for change, sequencer in changes:
                    if sequencer is not None:
                        known = db.execute("SELECT sequencer FROM sequencers WHERE key = ?",
                                           (change.key,)).fetchone()
                        if known is not None and int(known[0], 16) >= int(sequencer, 16):
                            continue
                        db.execute("INSERT OR REPLACE INTO sequencers VALUES (?, ?)",
                                   (change.key, sequencer))
                    applied += 1
                    # Only a sequencer proves the change is new; without one, probe first.
                    fresh = int(sequencer is not None and change.kind is Kind.PUT)
                    db.executemany(_UPSERT_NEW, [(
                        change.key, r, change.kind.value, change.etag, change.size,
                        change.last_modified, change.version_id, change.origin, now, fresh)
                        for r in regions])
                    if change.kind is Kind.PUT:
                        db.execute("INSERT OR REPLACE INTO listing VALUES (?, ?, ?, ?)",
                                   (change.key, change.etag, change.size, change.last_modified))
                    else:
                        db.execute("DELETE FROM listing WHERE key = ?", (change.key,))
                    if message is not None:
                        db.execute("INSERT OR REPLACE INTO messages VALUES (?, ?, ?, ?, ?)",
                                   (message[0], message[1], change.key, now, now))
            return applied
        return await self._run(apply)

    async def settled_messages(self, limit: int = 100) -> list[tuple[str, str]]:
        """Messages none of whose keys has work left: safe to delete from the queue."""
        return await self._run(lambda: self.db.execute(
            "SELECT id, receipt FROM messages m WHERE NOT EXISTS "
            "(SELECT 1 FROM pending p WHERE p.key = m.key) LIMIT ?", (limit,)).fetchall())

    async def messages_to_extend(self, older_than: float) -> list[tuple[str, str]]:
        """Messages whose work is under way and has not failed yet, last extended before
        ``older_than``.

        A message whose work has failed (or waits for a region out of service) is
        left to expire: redelivered often enough, the queue's redrive policy moves
        it to the dead-letter queue, while the journal keeps the work and its reason.
        """
        return await self._run(lambda: self.db.execute(
            "SELECT id, receipt FROM messages m WHERE extended < ? AND EXISTS (SELECT 1 FROM "
            "pending p WHERE p.key = m.key AND p.reason IS NULL)", (older_than,)).fetchall())

    async def extended(self, ids: list[str]) -> None:
        def update() -> None:
            with self._tx():
                self.db.executemany("UPDATE messages SET extended = ? WHERE id = ?",
                                    [(time.time(), i) for i in ids])
        await self._run(update)

    async def forget_messages(self, ids: list[str]) -> None:
        def delete() -> None:
            with self._tx():
                self.db.executemany("DELETE FROM messages WHERE id = ?", [(i,) for i in ids])
        await self._run(delete)

    async def save_health(self, problems: dict[str, str]) -> None:
        """Record which breakers are open, for `replicator status` in another process."""
        def replace() -> None:
            with self._tx():
                self.db.execute("DELETE FROM health")
                self.db.executemany("INSERT INTO health VALUES (?, ?, ?)",
                                    [(n, p, time.time()) for n, p in problems.items()])
        await self._run(replace)

    async def health(self) -> dict[str, str]:
        return await self._run(lambda: dict(self.db.execute("SELECT name, problem FROM health")))

    async def dead_letter(self, message_id: str, body: str, reason: str) -> None:
        def insert() -> None:
            with self._tx():
                self.db.execute("INSERT OR REPLACE INTO dead_letters VALUES (?, ?, ?, ?)",
                                (message_id, body[:65536], reason, time.time()))
        await self._run(insert)

    async def dispatched(self, rows: list[Pending]) -> None:
        """Rows handed to the copier are no longer fresh: after a crash, probe before copying."""
        fresh = [(r.change.key, r.region) for r in rows if r.fresh]

        def update() -> None:
            with self._tx():
                self.db.executemany("UPDATE pending SET fresh = 0 WHERE key = ? AND region = ?",
                                    fresh)
        if fresh:
            await self._run(update)

    async def revive(self, region: str) -> int:
        """A region is back: everything it was waiting for is due now, failed rows included
        (archived sources excepted: the region was not what held them)."""
        def update() -> int:
            with self._tx():
                return self.db.execute("UPDATE pending SET next_try = ?, state = 'pending' "
                                       "WHERE region = ? AND reason IS NOT 'archived'",
                                       (time.time(), region)).rowcount
        return await self._run(update)

    async def note_region(self, region: str, reason: str, error: str) -> None:
        """Stamp a region's waiting rows with why the region is out of service."""
        def update() -> None:
            with self._tx():
                self.db.execute("UPDATE pending SET reason = ?, error = ? WHERE region = ? "
                                "AND (reason IS NULL OR reason != ?)",
                                (reason, error[:2000], region, reason))
        await self._run(update)

    async def fail_region(self, region: str, reason: str, error: str) -> None:
        """Mark every row of a region that is out of service as failed, with the cause."""
        def update() -> None:
            with self._tx():
                self.db.execute("UPDATE pending SET state = 'failed', reason = ?, error = ? "
                                "WHERE region = ?", (reason, error[:2000], region))
        await self._run(update)

    async def next_try(self) -> float | None:
        return await self._run(lambda: self.db.execute("SELECT min(next_try) FROM pending").fetchone()[0])

    async def finish(self, row: Pending) -> bool:
        """Remove a verified row, unless a newer change of that key replaced it meanwhile."""
        def delete() -> bool:
            with self._tx():
                cur = self.db.execute(
                    "DELETE FROM pending WHERE key = ? AND region = ? AND kind = ? AND etag = ?",
                    (row.change.key, row.region, row.change.kind.value, row.change.etag))
            return cur.rowcount > 0
        return await self._run(delete)

    async def postpone(self, row: Pending, *, reason: str, error: str, next_try: float,
                       failed: bool) -> None:
        """Record a failed attempt; the row stays, to be tried again at ``next_try``."""
        def update() -> None:
            with self._tx():
                self.db.execute(
                    "UPDATE pending SET attempts = attempts + 1, next_try = ?, state = ?, "
                    "reason = ?, error = ? WHERE key = ? AND region = ? AND kind = ? AND etag = ?",
                    (next_try, "failed" if failed else "pending", reason, error[:2000],
                     row.change.key, row.region, row.change.kind.value, row.change.etag))
        await self._run(update)

    async def count(self, *, state: str | None = None, regions: set[str] | None = None) -> int:
        sql, args = "SELECT count(*) FROM pending WHERE 1", []
        if state:
            sql, args = sql + " AND state = ?", [state]
        if regions is not None:
            sql += f" AND region IN ({','.join('?' * len(regions))})"
            args += sorted(regions)
        return await self._run(lambda: self.db.execute(sql, args).fetchone()[0])

    async def backlog(self, regions: list[str]) -> list[RegionBacklog]:
        def select() -> list[RegionBacklog]:
            found = {r[0]: r for r in self.db.execute(
                "SELECT region, sum(state = 'pending'), sum(state = 'failed'), sum(size), "
                "min(origin) FROM pending GROUP BY region")}
            return [RegionBacklog(r, *(found[r][1:] if r in found else (0, 0, 0, None)))
                    for r in regions]
        return await self._run(select)

    async def reasons(self) -> dict[str, dict[str, int]]:
        """Rows failing now, per region and reason."""
        def select() -> dict[str, dict[str, int]]:
            out: dict[str, dict[str, int]] = {}
            for region, reason, n in self.db.execute(
                    "SELECT region, reason, count(*) FROM pending WHERE reason IS NOT NULL "
                    "GROUP BY region, reason"):
                out.setdefault(region, {})[reason] = n
            return out
        return await self._run(select)

    async def replica_counts(self, regions: int) -> dict[int, int]:
        """Listed source objects by how many regions hold their current version."""
        def select() -> dict[int, int]:
            total = self.db.execute("SELECT count(*) FROM listing").fetchone()[0]
            counts = dict.fromkeys(range(regions + 1), 0)
            for waiting, n in self.db.execute(
                    "SELECT w, count(*) FROM (SELECT count(*) AS w FROM pending p "
                    "JOIN listing l ON l.key = p.key AND l.etag = p.etag WHERE p.kind = 'put' "
                    "GROUP BY p.key) GROUP BY w"):
                counts[max(0, regions - waiting)] += n
                total -= n
            counts[regions] += total
            return counts
        return await self._run(select)

    async def failures(self, limit: int = 100) -> list[Pending]:
        return await self._run(lambda: [_pending(r) for r in self.db.execute(
            "SELECT * FROM pending WHERE reason IS NOT NULL ORDER BY region, key LIMIT ?", (limit,))])

    # -- multipart uploads in progress ----------------------------------------

    async def record_upload(self, region: str, key: str, upload_id: str) -> None:
        def insert() -> None:
            with self._tx():
                self.db.execute("INSERT OR REPLACE INTO uploads VALUES (?, ?, ?, ?)",
                                (region, key, upload_id, time.time()))
        await self._run(insert)

    async def forget_upload(self, region: str, upload_id: str) -> None:
        def delete() -> None:
            with self._tx():
                self.db.execute("DELETE FROM uploads WHERE region = ? AND upload_id = ?",
                                (region, upload_id))
        await self._run(delete)

    async def uploads(self) -> list[tuple[str, str, str]]:
        return await self._run(lambda: self.db.execute(
            "SELECT region, key, upload_id FROM uploads").fetchall())

    async def pending_keys(self, region: str) -> set[str]:
        return await self._run(lambda: {k for (k,) in self.db.execute(
            "SELECT key FROM pending WHERE region = ?", (region,))})

    @contextlib.contextmanager
    def _tx(self) -> Iterator[None]:
        """One transaction: committed on success, rolled back on any error."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")


def _pending(row: tuple[Any, ...]) -> Pending:
    (key, region, kind, etag, size, mtime, version_id, origin, attempts, next_try, state,
     reason, error, fresh) = row
    change = Change(key=key, kind=Kind(kind), etag=etag, size=size, last_modified=mtime,
                    version_id=version_id, origin=origin)
    return Pending(change, region, attempts, state, next_try, reason, error, bool(fresh))
