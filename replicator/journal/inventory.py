"""Region inventories (see ``replicator.inventory``): which queued puts need no probe.

One region's listing is kept in a temporary table while it is taken: there is
nothing in it to recover after a restart.
"""

from __future__ import annotations

from ..model import Kind
from .core import Slice, on_journal_thread


class Inventory(Slice):
    """A region's listing against the puts queued for it."""

    @on_journal_thread
    def unprobed(self) -> tuple[int, dict[str, int]]:
        """Objects in the last listing, and per region the untried puts that would be probed."""
        listed: int = self.db.execute("SELECT count(*) FROM listing").fetchone()[0]
        rows = self.db.execute("SELECT region, count(*) FROM pending WHERE kind = ? AND fresh = 0 "
                               "AND attempts = 0 GROUP BY region", (Kind.PUT.value,))
        return listed, dict(rows.fetchall())

    @on_journal_thread
    def begin_inventory(self) -> None:
        self.db.execute("DELETE FROM inventory")

    @on_journal_thread
    def stage_inventory(self, keys: list[str]) -> None:
        """Keep one page of a region's listing (a temporary table: nothing to recover)."""
        with self.tx():
            self.db.executemany("INSERT OR IGNORE INTO inventory VALUES (?)", [(k,) for k in keys])

    @on_journal_thread
    def commit_inventory(self, region: str) -> int:
        """Mark the region's untried puts of keys it does not hold as needing no probe.

        Returns how many.
        """
        with self.tx():
            spared = self.db.execute(
                "UPDATE pending SET fresh = 1 WHERE region = ? AND kind = ? AND fresh = 0 "
                "AND attempts = 0 AND key NOT IN (SELECT key FROM inventory)",
                (region, Kind.PUT.value)).rowcount
        return spared
