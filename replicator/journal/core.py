"""The journal's core: one SQLite connection, the one thread that uses it, the schema.

Every concern of the journal (see ``__init__``) is a ``Slice`` over the same
``Connection``. All SQLite work runs on the connection's private thread, so the
event loop never blocks on disk and the connection is never shared between
threads; ``on_journal_thread`` turns a slice's plain method into an awaitable
that runs there. Writes go through ``tx()``: one transaction, committed on
success and rolled back on any error.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from ..errors import ReplicatorError

T = TypeVar("T")
P = ParamSpec("P")
S = TypeVar("S", bound="Slice")

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

#: Queue a change of a key for a region, replacing any older change of it (the
#: listing, the work queue and the events ledger all queue work this way).
UPSERT = """
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
UPSERT_NEW = UPSERT.rstrip() + " WHERE pending.kind != excluded.kind OR pending.etag != excluded.etag"
SCHEMA_VERSION = 4


class Connection:
    """The journal file's one connection and the one thread it is used on."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")
        self._db: sqlite3.Connection | None = None

    async def run(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the journal's thread."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    @property
    def db(self) -> sqlite3.Connection:
        assert self._db is not None, "journal is not open"
        return self._db

    async def open(self) -> None:
        await self.run(self._connect)

    def _connect(self) -> None:
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

    async def close(self) -> None:
        if self._db is not None:
            await self.run(self.db.close)
            self._db = None
        self._pool.shutdown(wait=True)

    @contextlib.contextmanager
    def tx(self) -> Iterator[None]:
        """One transaction: committed on success, rolled back on any error."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")


class Slice:
    """One concern's view of the journal, over the connection every slice shares."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    @property
    def db(self) -> sqlite3.Connection:
        return self.connection.db

    def tx(self) -> contextlib.AbstractContextManager[None]:
        return self.connection.tx()


def on_journal_thread(method: Callable[Concatenate[S, P], T]
                      ) -> Callable[Concatenate[S, P], Coroutine[Any, Any, T]]:
    """Make a slice's synchronous method awaitable, its body run on the journal's thread."""
    @functools.wraps(method)
    async def run(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self.connection.run(functools.partial(method, self, *args, **kwargs))
    return run
