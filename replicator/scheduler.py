"""The scheduler: takes due work from the journal and runs it, a bounded number at a time.

The journal is the queue: nothing pending lives only in memory. One key is
handled by one task at a time (so changes to a key apply in order), and the
copier writes it to all regions that need it concurrently; each region's
outcome is recorded on its own row, so a dead region never holds back the others.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from .config import Retry
from .copier import Copier
from .health import Health
from .journal import Pending
from .lanes import Lane
from .metrics import Metrics
from .model import Change, Kind, Outcome, RegionResult
from .retry import item_delay
from .s3 import ObjectStore

log = logging.getLogger(__name__)

#: Reasons that mean "the source moved on": look at it again instead of retrying blindly.
SOURCE_MOVED = frozenset({"source_changed", "source_vanished"})
#: Longest nap between looks at the journal when nothing is due.
MAX_NAP = 5.0
#: When every due row is blocked by a copy in flight: that copy's end wakes us sooner; this
#: bounds the wait for rows that come due meanwhile (``next_try`` cannot see past busy rows).
BLOCKED_NAP = 1.0
#: When an archived source (GLACIER, DEEP_ARCHIVE) is tried again: not until it changes
#: (a new change replaces the row) or an operator restores it and runs `replicator retry`.
PARKED = float("inf")


class WorkQueue(Protocol):
    """What the scheduler needs from the journal (``Journal.work``)."""

    async def due(self, now: float, limit: int, regions: set[str],
                  busy: set[tuple[str, str]]) -> list[Pending]: ...
    async def dispatched(self, rows: list[Pending]) -> None: ...
    async def count(self, *, state: str | None = None, regions: set[str] | None = None) -> int: ...
    async def next_try(self) -> float | None: ...
    async def enqueue(self, change: Change, regions: Iterable[str]) -> None: ...
    async def finish(self, row: Pending) -> bool: ...
    async def postpone(self, row: Pending, *, reason: str, error: str, next_try: float,
                       failed: bool) -> None: ...
    async def revive(self, region: str) -> int: ...


class Scheduler:
    """Runs due journal rows through the copier and records every outcome."""

    def __init__(self, journal: WorkQueue, copier: Copier, source: ObjectStore, *,
                 regions: list[str], concurrency: int, retry: Retry, replicate_deletes: bool,
                 wants: Callable[[str], bool], metrics: Metrics, health: Health) -> None:
        self.journal = journal
        self.copier = copier
        self.source = source
        self.lanes = {region: Lane(concurrency) for region in regions}
        self.concurrency = concurrency
        self.retry = retry
        self.replicate_deletes = replicate_deletes
        self.wants = wants
        self.metrics = metrics
        self.health = health
        self.tally: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        self.last_verified: dict[str, tuple[str, float]] = {}
        self._busy: set[tuple[str, str]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """New work may be due (the feed queued some, or a copy finished)."""
        self._wake.set()

    def _open_lanes(self) -> set[str]:
        """Regions that may take more work now: breaker closed and lane not full."""
        regions = self.health.allowed(list(self.lanes))
        return {r for r in regions if self.lanes[r].free}

    async def run(self, stop: asyncio.Event, *, until_idle: bool = False,
                  grace: float = 30.0) -> None:
        """Dispatch until ``stop`` (or, with ``until_idle``, until nothing is pending)."""
        stopping = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                self._wake.clear()
                free = self.concurrency - len(self._tasks)
                started = (await self._due(free)) if free > 0 else {}
                # One transaction for the whole batch, before any of it is copied.
                await self.journal.dispatched([r for rows in started.values() for r in rows])
                for key, rows in started.items():
                    self._start(key, rows)
                if until_idle and not self._tasks and await self.journal.count(
                        state="pending", regions=self.health.allowed(list(self.lanes))) == 0:
                    return
                await self._nap(stopping, eager=bool(started))
            if self._tasks:
                log.info("stopping: waiting up to %.0fs for %d copies in flight", grace,
                         len(self._tasks))
                await asyncio.wait(self._tasks, timeout=grace)
        finally:
            stopping.cancel()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, stopping, return_exceptions=True)

    async def _due(self, free: int) -> dict[str, list[Pending]]:
        """Due rows grouped by key, for at most ``free`` keys, within each region's lane."""
        room = {r: self.lanes[r].limit - self.lanes[r].active for r in self._open_lanes()}
        rows = await self.journal.due(time.time(), limit=free * len(self.lanes) * 2,
                                      regions=set(room), busy=self._busy)
        by_key: dict[str, list[Pending]] = {}
        for row in rows:
            if room[row.region] <= 0 or (row.change.key not in by_key and len(by_key) >= free):
                continue
            room[row.region] -= 1
            by_key.setdefault(row.change.key, []).append(row)
        return by_key

    def _start(self, key: str, rows: list[Pending]) -> None:
        for row in rows:
            self._busy.add((key, row.region))
            self.lanes[row.region].active += 1
        task = asyncio.create_task(self._handle(key, rows))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _nap(self, stopping: asyncio.Task[bool], *, eager: bool) -> None:
        """Wait until work may be startable. ``eager``: the last look started some, so more may be.

        Due rows that could not start (their key or lane busy) are not a reason to look
        again at once: the copy in the way wakes the scheduler when it finishes.
        """
        next_try = await self.journal.next_try()
        timeout = MAX_NAP if next_try is None else min(MAX_NAP, max(0.0, next_try - time.time()))
        if timeout <= 0 and not eager:
            timeout = BLOCKED_NAP
        elif timeout <= 0 and len(self._tasks) < self.concurrency and self._open_lanes():
            return
        waking = asyncio.create_task(self._wake.wait())
        await asyncio.wait({waking, stopping}, timeout=max(timeout, 0.05),
                           return_when=asyncio.FIRST_COMPLETED)
        waking.cancel()

    async def _handle(self, key: str, rows: list[Pending]) -> None:
        try:
            groups: dict[Change, list[Pending]] = {}
            for row in rows:
                groups.setdefault(row.change, []).append(row)
            for change, group in groups.items():
                started = time.monotonic()
                results = await self.copier.apply(change, [r.region for r in group],
                                                  probe={r.region for r in group if not r.fresh})
                elapsed = time.monotonic() - started
                await asyncio.shield(self._record(change, group, results, elapsed))
        except Exception:
            log.exception("unexpected error handling key=%r; it stays in the journal", key)
        finally:
            for row in rows:
                self._busy.discard((key, row.region))
                if row.region in self.lanes:  # a reload may have removed the region
                    self.lanes[row.region].active -= 1
            self.wake()

    async def _record(self, change: Change, rows: list[Pending], results: list[RegionResult],
                      elapsed: float) -> None:
        moved = [row for row, res in zip(rows, results, strict=True) if res.reason in SOURCE_MOVED]
        if moved and await self._refresh(change, moved):
            rows_results = [(r, s) for r, s in zip(rows, results, strict=True) if r not in moved]
        else:
            rows_results = list(zip(rows, results, strict=True))
        for row, result in rows_results:
            self.tally[row.region][result.outcome.value] += 1
            self.tally[row.region]["bytes"] += result.nbytes
            _log_result(change, result, elapsed)
            if self.health.observe(result):
                await self.journal.revive(row.region)
            if result.done and row.region in self.lanes:
                self.lanes[row.region].succeeded()
                if await self.journal.finish(row):
                    self._count(row, result)
                continue
            if result.reason == "archived":
                await self.journal.postpone(row, reason="archived", error=result.error or "",
                                            next_try=PARKED, failed=True)
                continue
            self.metrics.failures.labels(row.region, result.reason or "error").inc()
            if result.reason == "checksum_mismatch":
                self.metrics.mismatches.labels(row.region).inc()
            attempts = row.attempts + 1
            failed = result.permanent or attempts >= self.retry.item_attempts
            delay = self.retry.failed_interval if failed else item_delay(self.retry, attempts)
            await self.journal.postpone(row, reason=result.reason or "error",
                                        error=result.error or "", next_try=time.time() + delay,
                                        failed=failed)

    def _count(self, row: Pending, result: RegionResult) -> None:
        """Count a verified change once: skips (already there) are not replications."""
        self.last_verified[row.region] = (row.change.key, result.finished)
        if result.unproven:
            self.metrics.unproven.labels(row.region).inc()
            self.tally[row.region]["unproven"] += 1
        if result.outcome in (Outcome.COPIED, Outcome.DELETED):
            operation = row.change.kind.value
            self.metrics.objects.labels(row.region, operation).inc()
            self.metrics.bytes.labels(row.region, operation).inc(result.nbytes)
            self.metrics.lag.labels(row.region).observe(max(0.0, result.finished - row.change.origin))

    async def _refresh(self, change: Change, rows: list[Pending]) -> bool:
        """The source changed under a copy: queue what it holds now instead.

        Returns False when the source still shows the planned change (so the
        failure is recorded as an ordinary one, never retried in a hot loop).
        """
        try:
            head = await self.source.head(change.key)
        except Exception as exc:  # the source is unreachable: record the failure as it is
            log.warning("key=%r: cannot re-read the source: %s", change.key, exc)
            return False
        now = time.time()
        regions = [r.region for r in rows]
        if head is not None:
            if head.etag == change.etag and change.kind is Kind.PUT:
                return False
            await self.journal.enqueue(Change(change.key, Kind.PUT, head.etag, head.size,
                                              head.last_modified, head.version_id,
                                              min(head.last_modified, now)), regions)
        elif self.replicate_deletes and self.wants(change.key):
            if change.kind is Kind.DELETE:
                return False
            await self.journal.enqueue(Change(change.key, Kind.DELETE, last_modified=now,
                                              origin=now), regions)
        else:
            for row in rows:
                await self.journal.finish(row)
        log.info("key=%r changed at the source during the copy; queued its current state",
                 change.key)
        return True


def _log_result(change: Change, result: RegionResult, elapsed: float) -> None:
    level = logging.WARNING if result.outcome is Outcome.FAILED or result.unproven else logging.INFO
    log.log(level, "%s key=%r region=%s bytes=%d duration=%.3fs outcome=%s%s%s",
            change.kind.value, change.key, result.region, result.nbytes, elapsed,
            result.outcome.value, " UNPROVEN (no digest of the bytes to check)"
            if result.unproven else "", f" reason={result.reason} error={result.error}"
            if result.reason else "",
            extra={"key": change.key, "region": result.region, "bytes": result.nbytes,
                   "duration": round(elapsed, 3), "outcome": result.outcome.value,
                   "op": change.kind.value, "reason": result.reason})
