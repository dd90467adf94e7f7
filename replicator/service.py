"""The service: builds the stages from a config and starts and stops them in order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from types import TracebackType
from typing import Any

from prometheus_client import CollectorRegistry

from . import inventory
from .auditor import Auditor
from .clients import Clients
from .config import Config, Region
from .copier import Copier
from .errors import ConfigError, ReplicatorError, Throttled
from .events import EventsFeed
from .feed import PollFeed
from .health import Health
from .journal import Journal
from .lanes import Lane
from .metrics import Metrics
from .queue import SqsQueue
from .retry import RequestRetry
from .s3 import ObjectStore, S3Store
from .scheduler import Scheduler
from .server import StatusServer

log = logging.getLogger(__name__)

#: The replica-count query groups the whole backlog: run it at most this often.
REPLICA_COUNT_EVERY = 5.0


class Service:
    """One replicator: source, journal, feed, scheduler, copier and auditor, wired together."""

    def __init__(self, config: Config, registry: CollectorRegistry | None = None) -> None:
        self.config = config
        names = [r.name for r in config.regions]
        self.metrics = Metrics(registry or CollectorRegistry(), names)
        self.metrics.lag_slo.set(config.http.lag_slo)
        self.metrics.audit_interval.set(config.audit.interval)
        self.health = Health(self.metrics, names, failures=config.breaker.failures)
        self.journal = Journal(config.journal.path)
        self.clients = Clients(pool_size=config.replication.concurrency * 2 + 8)
        self.source: ObjectStore
        self.regions: dict[str, ObjectStore] = {}
        self._replicas_counted = 0.0
        self._reloads: set[asyncio.Task[bool]] = set()

    async def __aenter__(self) -> Service:
        cfg = self.config
        await self.journal.open()
        self.retry = retry = RequestRetry(cfg.retry, on_retry=self._retried)
        self.source = S3Store("source", await self.clients.client_for(cfg.source),
                              cfg.source.bucket, retry, read_args=cfg.source.read_args())
        for region in cfg.regions:
            self.regions[region.name] = await self._store(region)
        self.copier = copier = Copier(self.source, self.regions, cfg.replication,
                                      {r.name: r.storage_class for r in cfg.regions}, self.journal.uploads)
        self.scheduler = Scheduler(self.journal.work, copier, self.source, regions=list(self.regions),
                                   concurrency=cfg.replication.concurrency, retry=cfg.retry,
                                   replicate_deletes=cfg.replication.replicate_deletes,
                                   wants=cfg.replication.wants, metrics=self.metrics,
                                   health=self.health)
        self.feed = PollFeed(self.source, self.journal.listing, self.regions, cfg.replication,
                             interval=cfg.feed.poll_interval, on_changes=self.scheduler.wake,
                             guard=cfg.delete_guard, health=self.health,
                             inventory=self._inventory)
        self.events: EventsFeed | None = None
        if cfg.feed.kind == "events":
            assert cfg.feed.queue is not None
            queue = SqsQueue(await self.clients.client_for(cfg.source, "sqs"), cfg.feed.queue, retry)
            self.events = EventsFeed(
                queue, self.feed, self.journal.ledger, self.regions, cfg.replication, cfg.feed,
                self.metrics, receivers=max(1, cfg.replication.concurrency // 10),
                on_changes=self.scheduler.wake)
        self.auditor = Auditor(self.source, self.regions, self.journal.listing, self.journal.work,
                               cfg.replication, self.metrics, cfg.delete_guard)
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        await self.clients.close()
        await self.journal.close()

    def request_reload(self, path: str) -> None:
        """SIGHUP: reload the config from ``path`` without dropping in-flight work."""
        task = asyncio.create_task(self.reload(path))
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def reload(self, path: str) -> bool:
        """Apply a new config to the running service; an invalid one is rejected, the old kept."""
        try:
            new = Config.load(path)
        except ConfigError as exc:
            log.error("reload rejected, still running the previous config: %s", exc)
            return False
        fixed = ("source", "journal", "http")
        changed = [name for name in fixed if getattr(new, name) != getattr(self.config, name)]
        if (new.feed.kind, new.feed.queue) != (self.config.feed.kind, self.config.feed.queue):
            changed.append("feed.kind or feed.queue")
        if changed:
            log.error("reload rejected, still running the previous config: changing %s needs a "
                      "restart", ", ".join(changed))
            return False
        await self._apply(new)
        log.info("reloaded %s: regions %s", path, ", ".join(r.name for r in new.regions))
        return True

    async def _store(self, region: Region) -> S3Store:
        return S3Store(region.name, await self.clients.client_for(region), region.bucket,
                       self.retry, write_args=region.write_args())

    async def _apply(self, new: Config) -> None:
        old = {r.name: r for r in self.config.regions}
        self.config = new
        for region in new.regions:
            if old.get(region.name) != region:
                self.regions[region.name] = await self._store(region)
                self.copier.storage_classes[region.name] = region.storage_class
            if region.name not in old:
                self.metrics.add_region(region.name)
                self.health.add(region.name)
                self.scheduler.lanes[region.name] = Lane(new.replication.concurrency)
                queued = await self.journal.work.backfill(region.name, new.replication.wants)
                log.info("new region %s: %d objects queued for backfill", region.name, queued)
        for name in set(old) - {r.name for r in new.regions}:
            for table in (self.regions, self.scheduler.lanes, self.copier.storage_classes):
                table.pop(name, None)
            self.health.problems.pop(name, None)
            dropped = await self.journal.work.forget_region(name)
            log.warning("region %s removed from the config: %d pending items dropped", name, dropped)
        self.retry.policy = new.retry
        self.copier.options = self.feed.options = self.auditor.options = new.replication
        self.feed.interval = new.feed.poll_interval
        self.feed.guard = self.auditor.guard = new.delete_guard
        self.scheduler.retry = new.retry
        self.scheduler.concurrency = new.replication.concurrency
        self.scheduler.replicate_deletes = new.replication.replicate_deletes
        self.scheduler.wants = new.replication.wants
        for lane in self.scheduler.lanes.values():
            lane.maximum = lane.limit = new.replication.concurrency
        self.health.threshold = new.breaker.failures
        self.metrics.audit_interval.set(new.audit.interval)
        await self.check()
        await self._inventory()
        self.scheduler.wake()

    async def _inventory(self) -> None:
        """List the regions in service that have many copies to probe (see inventory.py)."""
        allowed = self.health.allowed(list(self.regions))
        serving = {n: s for n, s in self.regions.items() if n in allowed}
        await inventory.take(self.journal.inventory, serving,
                             self.config.replication.include_prefixes or ("",))

    def _retried(self, name: str, exc: BaseException) -> None:
        self.metrics.retries.labels(name).inc()
        if isinstance(exc, Throttled) and name in self.scheduler.lanes:
            self.scheduler.lanes[name].throttled()

    async def check(self) -> None:
        """Probe the source and every region once; problems go to logs, metrics and /readyz.

        This is also the half-open probe of every open breaker: a region that
        answers again is closed and its waiting work made due at once.
        """
        async def probe(name: str, store: ObjectStore) -> None:
            try:
                await store.check()
            except ReplicatorError as exc:
                self.health.down(name, exc.reason, str(exc))
                if name in self.regions:
                    await self.journal.work.note_region(name, exc.reason, str(exc))
                return
            if self.health.ok(name) and name in self.regions:
                await self.journal.work.revive(name)
                self.scheduler.wake()
        await asyncio.gather(probe("source", self.source),
                             *(probe(n, s) for n, s in self.regions.items()))
        await self.journal.report.save_health(self.health.problems)

    async def recover(self) -> None:
        """Abort multipart uploads a previous run left open (a crash, a kill -9)."""
        for region, key, upload_id in await self.journal.uploads.open_uploads():
            store = self.regions.get(region)
            with contextlib.suppress(ReplicatorError):
                if store is not None:
                    await store.abort_upload(key, upload_id)
                await self.journal.uploads.forget_upload(region, upload_id)
                log.info("aborted multipart upload left by a previous run: key=%r region=%s",
                         key, region)
        # An upload created just before a crash may not have reached the journal:
        # abort any open upload of a key that still has work pending in that region.
        for region, store in self.regions.items():
            with contextlib.suppress(ReplicatorError):
                pending = await self.journal.work.pending_keys(region)
                for key, upload_id in await store.open_uploads():
                    if key in pending:
                        await store.abort_upload(key, upload_id)
                        log.info("aborted orphaned multipart upload: key=%r region=%s", key, region)

    async def sync(self) -> bool:
        """One pass: list, copy what differs, wait until every row is verified or failed."""
        await self.check()  # before the listing, so that only regions in service are inventoried
        await self.recover()
        await self.feed.poll_once()
        await self.drain()
        return await self.journal.work.count() == 0

    async def drain(self) -> None:
        """Run the scheduler until nothing is pending; a region out of service fails its rows."""
        await self.check()
        await self.scheduler.run(asyncio.Event(), until_idle=True)
        for region in self.regions:
            problem = self.health.problems.get(region)
            if problem is not None:
                reason, _, error = problem.partition(": ")
                await self.journal.work.fail_region(region, reason, error)

    async def run(self, stop: asyncio.Event) -> None:
        """The daemon: serve HTTP, poll, copy and audit until ``stop``, then drain."""
        server = StatusServer(self)
        await server.start()
        try:
            await self.check()
            await self.recover()
            log.info("replicating %s to %s; status on http://%s/status", self.config.source.bucket,
                     ", ".join(f"{r.name} ({r.bucket})" for r in self.config.regions),
                     self.config.http.listen)
            async with asyncio.TaskGroup() as group:
                group.create_task(self.events.run(stop) if self.events else self.feed.run(stop))
                group.create_task(self.scheduler.run(stop, grace=self.config.shutdown_grace))
                group.create_task(self._every(stop, self.config.breaker.probe_interval, self.check))
                group.create_task(self._every(stop, self.config.audit.interval, self._audit,
                                              first=self.config.audit.interval))
        finally:
            await server.stop()
        log.info("stopped")

    async def _every(self, stop: asyncio.Event, interval: float, job: Any, first: float = 0.0) -> None:
        delay = first
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
                return
            await job()
            delay = interval

    async def _audit(self) -> None:
        try:
            await self.auditor.audit(repair=self.config.audit.repair)
        except ReplicatorError as exc:
            log.warning("audit failed: %s", exc)
        self.scheduler.wake()

    async def observe(self) -> None:
        """Refresh the gauges that describe the backlog from the journal."""
        now = time.time()
        for row in await self.journal.report.backlog(list(self.regions)):
            self.metrics.backlog_objects.labels(row.region).set(row.pending + row.failed)
            self.metrics.backlog_bytes.labels(row.region).set(row.bytes or 0)
            self.metrics.failed_objects.labels(row.region).set(row.failed)
            age = max(0.0, now - row.oldest_origin) if row.oldest_origin else 0.0
            self.metrics.oldest_pending_age.labels(row.region).set(age)
        for name, lane in self.scheduler.lanes.items():
            self.metrics.concurrency.labels(name).set(lane.limit)
        self.metrics.deletes_held.set(await self.journal.listing.held_deletes())
        if now - self._replicas_counted >= REPLICA_COUNT_EVERY:
            self._replicas_counted = now
            for count, n in (await self.journal.report.replica_counts(len(self.regions))).items():
                self.metrics.replica_count.labels(str(count)).set(n)

    async def snapshot(self) -> dict[str, Any]:
        """Everything /status shows, as plain data."""
        now = time.time()
        backlog = {b.region: b for b in await self.journal.report.backlog(list(self.regions))}
        reasons = await self.journal.report.reasons()
        regions = {}
        for name in self.regions:
            b = backlog[name]
            last = self.scheduler.last_verified.get(name)
            audit = self.auditor.last.get(name)
            regions[name] = {
                "up": name not in self.health.problems,
                "problem": self.health.problems.get(name),
                "backlog_objects": b.pending + b.failed,
                "backlog_bytes": b.bytes or 0,
                "failed_objects": b.failed,
                "oldest_pending_age_seconds": (now - b.oldest_origin) if b.oldest_origin else 0.0,
                "last_verified": None if last is None else {"key": last[0], "age_seconds": now - last[1]},
                "failures_by_reason": reasons.get(name, {}),
                "unproven_copies": self.scheduler.tally[name]["unproven"],
                "last_audit": None if audit is None or self.auditor.last_finished is None else {
                    "age_seconds": now - self.auditor.last_finished, "counts": audit.counts,
                    "consistent": audit.consistent, "error": audit.error},
            }
        return {"time": now, "regions": regions, "deletes_held": await self.journal.listing.held_deletes(),
                "source": {"bucket": self.config.source.bucket, "up": "source" not in self.health.problems,
                           "problem": self.health.problems.get("source")}}
