"""The SQS ledger: event messages received, each key's newest sequencer, dead letters.

A message is remembered until every change of its keys is done, then deleted
from the queue (at-least-once); a stale event (sequencer not above the key's
newest) is dropped; a message that is no S3 event is kept here with why.
"""

from __future__ import annotations

import time

from ..model import Change, Kind
from .core import UPSERT_NEW, Slice, on_journal_thread


class Ledger(Slice):
    """Event messages in, their changes queued, and when they may be acknowledged."""

    @on_journal_thread
    def apply_events(self, changes: list[tuple[Change, str | None]], regions: list[str],
                     message: tuple[str, str] | None) -> int:
        """Queue changes from S3 events; returns how many were newer than what is known.

        A change whose sequencer is not above the key's newest one is stale and
        dropped. The listing is updated too, so the next sweep does not find
        these changes again. ``message`` (id, receipt) is remembered until every
        change of its keys is done.
        """
        now = time.time()
        db = self.db
        applied = 0
        with self.tx():
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
                db.executemany(UPSERT_NEW, [(
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

    @on_journal_thread
    def settled_messages(self, limit: int = 100) -> list[tuple[str, str]]:
        """Messages none of whose keys has work left: safe to delete from the queue."""
        return self.db.execute(
            "SELECT id, receipt FROM messages m WHERE NOT EXISTS "
            "(SELECT 1 FROM pending p WHERE p.key = m.key) LIMIT ?", (limit,)).fetchall()

    @on_journal_thread
    def messages_to_extend(self, older_than: float) -> list[tuple[str, str]]:
        """Messages whose work is under way and has not failed yet, last extended before
        ``older_than``.

        A message whose work has failed (or waits for a region out of service) is
        left to expire: redelivered often enough, the queue's redrive policy moves
        it to the dead-letter queue, while the journal keeps the work and its reason.
        """
        return self.db.execute(
            "SELECT id, receipt FROM messages m WHERE extended < ? AND EXISTS (SELECT 1 FROM "
            "pending p WHERE p.key = m.key AND p.reason IS NULL)", (older_than,)).fetchall()

    @on_journal_thread
    def extended(self, ids: list[str]) -> None:
        with self.tx():
            self.db.executemany("UPDATE messages SET extended = ? WHERE id = ?",
                                [(time.time(), i) for i in ids])

    @on_journal_thread
    def forget_messages(self, ids: list[str]) -> None:
        with self.tx():
            self.db.executemany("DELETE FROM messages WHERE id = ?", [(i,) for i in ids])

    @on_journal_thread
    def dead_letter(self, message_id: str, body: str, reason: str) -> None:
        with self.tx():
            self.db.execute("INSERT OR REPLACE INTO dead_letters VALUES (?, ?, ?, ?)",
                            (message_id, body[:65536], reason, time.time()))
