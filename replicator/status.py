"""What the daemon tells about itself: the backlog gauges and the /status snapshot.

Both are read from the journal (the only truth about pending work) and the
stages' in-memory tallies; the HTTP server sees only this, through ``StatusSource``.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry

from .health import Health
from .journal import Journal
from .metrics import Metrics
from .wiring import Stages

#: The replica-count query groups the whole backlog: run it at most this often.
REPLICA_COUNT_EVERY = 5.0


class Status:
    """The status of one running replicator, for /metrics, /readyz and /status."""

    def __init__(self, stages: Stages, journal: Journal, metrics: Metrics, health: Health,
                 bucket: str) -> None:
        self.stages = stages
        self.journal = journal
        self.metrics = metrics
        self.health = health
        self.bucket = bucket
        self._replicas_counted = 0.0

    @property
    def registry(self) -> CollectorRegistry:
        return self.metrics.registry

    @property
    def problems(self) -> dict[str, str]:
        """Endpoints out of service, with why: /readyz answers 503 while there are any."""
        return self.health.problems

    async def observe(self) -> None:
        """Refresh the gauges that describe the backlog from the journal."""
        now = time.time()
        regions = list(self.stages.regions)
        for row in await self.journal.report.backlog(regions):
            self.metrics.backlog_objects.labels(row.region).set(row.pending + row.failed)
            self.metrics.backlog_bytes.labels(row.region).set(row.bytes or 0)
            self.metrics.failed_objects.labels(row.region).set(row.failed)
            age = max(0.0, now - row.oldest_origin) if row.oldest_origin else 0.0
            self.metrics.oldest_pending_age.labels(row.region).set(age)
        for name, lane in self.stages.scheduler.lanes.items():
            self.metrics.concurrency.labels(name).set(lane.limit)
        self.metrics.deletes_held.set(await self.journal.listing.held_deletes())
        if now - self._replicas_counted >= REPLICA_COUNT_EVERY:
            self._replicas_counted = now
            for count, n in (await self.journal.report.replica_counts(len(regions))).items():
                self.metrics.replica_count.labels(str(count)).set(n)

    async def snapshot(self) -> dict[str, Any]:
        """Everything /status shows, as plain data."""
        now = time.time()
        backlog = {b.region: b for b in await self.journal.report.backlog(list(self.stages.regions))}
        reasons = await self.journal.report.reasons()
        scheduler, auditor = self.stages.scheduler, self.stages.auditor
        regions = {}
        for name in self.stages.regions:
            b = backlog[name]
            last = scheduler.last_verified.get(name)
            audit = auditor.last.get(name)
            regions[name] = {
                "up": name not in self.health.problems,
                "problem": self.health.problems.get(name),
                "backlog_objects": b.pending + b.failed,
                "backlog_bytes": b.bytes or 0,
                "failed_objects": b.failed,
                "oldest_pending_age_seconds": (now - b.oldest_origin) if b.oldest_origin else 0.0,
                "last_verified": None if last is None else {"key": last[0], "age_seconds": now - last[1]},
                "failures_by_reason": reasons.get(name, {}),
                "unproven_copies": scheduler.tally[name]["unproven"],
                "last_audit": None if audit is None or auditor.last_finished is None else {
                    "age_seconds": now - auditor.last_finished, "counts": audit.counts,
                    "consistent": audit.consistent, "error": audit.error},
            }
        return {"time": now, "regions": regions,
                "deletes_held": await self.journal.listing.held_deletes(),
                "source": {"bucket": self.bucket, "up": "source" not in self.health.problems,
                           "problem": self.health.problems.get("source")}}
