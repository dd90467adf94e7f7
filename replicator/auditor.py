"""The auditor (anti-entropy): compare the source with every region, repair the difference.

It walks the source listing and every region's listing together in key order
(a k-way merge, so memory stays flat whatever the bucket size) and sorts each
key, per region, into ok / missing / mismatched / extra. It catches what the
change feed cannot see: a replica deleted, overwritten or corrupted directly
in a region.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from .config import Deletes, Replication
from .copier import replica_is_intact
from .errors import ReplicatorError
from .journal import DeleteGuard
from .metrics import AUDIT_STATES, Metrics
from .model import META_SOURCE_ETAG, Change, Kind, Listed
from .s3 import ObjectStore

log = logging.getLogger(__name__)

SAMPLES = 20  # keys remembered per state, for the report


class HeldDeletes(Protocol):
    """The delete guard's part of the journal (``Journal.listing``): extra replicas wait here."""

    async def hold_deletes(self, keys: list[str]) -> None: ...
    async def release_deletes(self, regions: list[str], guard: DeleteGuard | None = None) -> int: ...


class Repairs(Protocol):
    """Where the auditor queues the copies it finds missing (``Journal.work``)."""

    async def enqueue(self, change: Change, regions: Iterable[str]) -> None: ...


@dataclass
class RegionAudit:
    """What one audit found in one region."""

    region: str
    extra_allowed: bool = False  # deletes are not replicated, so replicas may outlive sources
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(AUDIT_STATES, 0))
    samples: dict[str, list[str]] = field(default_factory=lambda: {s: [] for s in AUDIT_STATES})
    error: str | None = None

    def add(self, state: str, key: str) -> None:
        self.counts[state] += 1
        if state != "ok" and len(self.samples[state]) < SAMPLES:
            self.samples[state].append(key)

    @property
    def consistent(self) -> bool:
        wrong = [s for s in AUDIT_STATES[1:] if not (s == "extra" and self.extra_allowed)]
        return self.error is None and all(self.counts[s] == 0 for s in wrong)

    @property
    def ratio(self) -> float:
        total = sum(self.counts[s] for s in ("ok", "missing", "mismatched", "archived"))
        return self.counts["ok"] / total if total else 1.0


class _Cursor:
    """One listing, one entry ahead; a listing that fails ends with its error kept."""

    def __init__(self, name: str, listing: AsyncIterator[Listed]) -> None:
        self.name = name
        self._listing = listing
        self.head: Listed | None = None
        self.error: str | None = None

    async def advance(self) -> None:
        try:
            self.head = await anext(self._listing)
        except StopAsyncIteration:
            self.head = None
        except ReplicatorError as exc:
            self.head, self.error = None, str(exc)


async def _merge(source: _Cursor, cursors: list[_Cursor]) -> AsyncIterator[
        tuple[str, Listed | None, dict[str, Listed | None]]]:
    """Every key of any listing, in order: the source's entry and each readable region's."""
    for cursor in (source, *cursors):
        await cursor.advance()
    while live := [c for c in (source, *cursors) if c.head is not None]:
        key = min(c.head.key for c in live if c.head is not None)
        here = [c for c in live if c.head is not None and c.head.key == key]
        src = source.head if source in here else None
        yield key, src, {c.name: c.head if c in here else None for c in cursors
                         if c.error is None and (src or c in here)}
        for cursor in here:
            await cursor.advance()


class Auditor:
    """Compares listings, records the result in metrics, and queues repairs."""

    def __init__(self, source: ObjectStore, regions: dict[str, ObjectStore], deletes: HeldDeletes,
                 repairs: Repairs, options: Replication, metrics: Metrics, guard: Deletes) -> None:
        self.guard = guard
        self.source = source
        self.regions = regions
        self.deletes = deletes
        self.repairs = repairs
        self.options = options
        self.metrics = metrics
        self.last: dict[str, RegionAudit] = {}
        self.last_finished: float | None = None

    async def audit(self, prefix: str = "", *, repair: bool = False,
                    progress: Callable[[int], None] | None = None) -> dict[str, RegionAudit]:
        results = {name: RegionAudit(name, not self.options.replicate_deletes)
                   for name in self.regions}
        source = _Cursor("source", self.source.listing(prefix))
        cursors = [_Cursor(name, store.listing(prefix)) for name, store in self.regions.items()]
        compared = 0
        extra: list[str] = []
        async for key, src, replicas in _merge(source, cursors):
            if self.options.wants(key):
                for name, replica in replicas.items():
                    state = await self._compare(name, key, src, replica, repair)
                    results[name].add(state, key)
                    if repair and state == "extra":
                        extra.append(key)
            compared += 1
            if progress and compared % 100 == 0:
                progress(compared)
        if progress:
            progress(compared)
        if source.error is not None:
            raise ReplicatorError(f"audit stopped: the source listing failed: {source.error}",
                                  reason="network")
        for cursor in cursors:
            results[cursor.name].error = cursor.error
        if extra and self.options.replicate_deletes:
            await self._delete_extra(sorted(set(extra)))
        self._publish(results)
        return results

    async def _delete_extra(self, keys: list[str]) -> None:
        """Extra replicas are deletes the feed missed: they pass the delete guard too."""
        await self.deletes.hold_deletes(keys)
        released = await self.deletes.release_deletes(list(self.regions), self.guard.allows)
        if not released:
            log.error("DELETE GUARD: the audit found %d extra objects; their deletes are held. "
                      "Run `replicator approve-deletes -c CONFIG` if they should go.", len(keys))

    async def _compare(self, region: str, key: str, src: Listed | None, replica: Listed | None,
                       repair: bool) -> str:
        """One key in one region: its state, and with ``repair`` a copy queued where needed."""
        state = await self._classify(region, src, replica)
        if repair and src is not None and state not in ("ok", "extra", "archived"):
            await self._repair(region, key, src)
        return state

    async def _classify(self, region: str, src: Listed | None, replica: Listed | None) -> str:
        if src is None:
            return "extra"
        if replica is None:
            return "archived" if src.archived else "missing"
        if replica.size != src.size:
            return "mismatched"
        if replica.etag == src.etag:
            return "ok"
        # Etags differ by design where one side is encrypted (SSE-KMS, SSE-C: no md5) or
        # a single-part source was copied in parts: the marker the replica was written
        # with names the source etag, and its own md5 or checksum proves its bytes.
        try:
            head = await self.regions[region].head(src.key, checksums=True)
        except ReplicatorError:
            return "mismatched"
        if head is not None and head.etag == replica.etag and \
                head.metadata.get(META_SOURCE_ETAG) == src.etag and \
                replica_is_intact(head, src.etag):
            return "ok"
        return "mismatched"

    async def _repair(self, region: str, key: str, src: Listed) -> None:
        await self.repairs.enqueue(Change(key, Kind.PUT, src.etag, src.size, src.last_modified,
                                          origin=time.time()), [region])

    def _publish(self, results: dict[str, RegionAudit]) -> None:
        now = time.time()
        for name, result in results.items():
            if result.error is not None:
                log.warning("audit of %s incomplete: %s", name, result.error)
                continue
            for state in AUDIT_STATES:
                self.metrics.audit_objects.labels(name, state).set(result.counts[state])
            self.metrics.consistency.labels(name).set(result.ratio)
            self.metrics.last_audit.labels(name).set(now)
            log.info("audit of %s: %s", name,
                     " ".join(f"{s}={result.counts[s]}" for s in AUDIT_STATES))
        self.last = results
        self.last_finished = now
