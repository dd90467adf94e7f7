"""What the journal tells operators: backlog, failures, replica counts, endpoint health.

Read-only apart from ``save_health``, which records the breakers for
`replicator status` run in another process.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from .core import Slice, on_journal_thread
from .work import Pending, pending_from_row


@dataclass(frozen=True, slots=True)
class RegionBacklog:
    region: str
    pending: int
    failed: int
    bytes: int
    oldest_origin: float | None


class Report(Slice):
    """Figures for metrics, /status and `replicator status`."""

    @on_journal_thread
    def backlog(self, regions: list[str]) -> list[RegionBacklog]:
        found = {r[0]: r for r in self.db.execute(
            "SELECT region, sum(state = 'pending'), sum(state = 'failed'), sum(size), "
            "min(origin) FROM pending GROUP BY region")}
        return [RegionBacklog(r, *(found[r][1:] if r in found else (0, 0, 0, None)))
                for r in regions]

    @on_journal_thread
    def reasons(self) -> dict[str, dict[str, int]]:
        """Rows failing now, per region and reason."""
        out: dict[str, dict[str, int]] = {}
        for region, reason, n in self.db.execute(
                "SELECT region, reason, count(*) FROM pending WHERE reason IS NOT NULL "
                "GROUP BY region, reason"):
            out.setdefault(region, {})[reason] = n
        return out

    @on_journal_thread
    def replica_counts(self, regions: int) -> dict[int, int]:
        """Listed source objects by how many regions hold their current version."""
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

    @on_journal_thread
    def failures(self, limit: int = 100) -> list[Pending]:
        return [pending_from_row(r) for r in self.db.execute(
            "SELECT * FROM pending WHERE reason IS NOT NULL ORDER BY region, key LIMIT ?", (limit,))]

    @on_journal_thread
    def save_health(self, problems: dict[str, str]) -> None:
        """Record which breakers are open, for `replicator status` in another process."""
        with self.tx():
            self.db.execute("DELETE FROM health")
            self.db.executemany("INSERT INTO health VALUES (?, ?, ?)",
                                [(n, p, time.time()) for n, p in problems.items()])

    @on_journal_thread
    def health(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT name, problem FROM health"))
