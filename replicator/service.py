"""The service: one replicator's life, from its config to its stop.

``build`` (wiring.py) sets every stage up in one place; ``run`` is the daemon as a
script; ``reload`` applies a new config (reload.py); ``status`` (status.py) is all
the HTTP server sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from types import TracebackType

from prometheus_client import CollectorRegistry

from . import reload as reloading
from .auditor import Auditor
from .clients import Clients
from .config import Config
from .copier import Copier
from .errors import ConfigError, ReplicatorError
from .events import EventsFeed
from .feed import PollFeed
from .health import Health
from .journal import Journal
from .metrics import Metrics
from .s3 import ObjectStore
from .scheduler import Scheduler
from .server import StatusServer
from .status import Status
from .stopping import every
from .wiring import Stages, build

log = logging.getLogger(__name__)


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
        self.stages: Stages
        self.status: Status
        self._reloads: set[asyncio.Task[bool]] = set()

    async def __aenter__(self) -> Service:
        await self.journal.open()
        self.stages = await build(self.config, self.journal, self.clients, self.metrics, self.health)
        self.status = Status(self.stages, self.journal, self.metrics, self.health,
                             self.config.source.bucket)
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        await self.clients.close()
        await self.journal.close()

    # The stages, by name, for the commands and the tests.
    @property
    def source(self) -> ObjectStore:
        return self.stages.source

    @property
    def regions(self) -> dict[str, ObjectStore]:
        return self.stages.regions

    @property
    def copier(self) -> Copier:
        return self.stages.copier

    @property
    def scheduler(self) -> Scheduler:
        return self.stages.scheduler

    @property
    def feed(self) -> PollFeed:
        return self.stages.feed

    @property
    def events(self) -> EventsFeed | None:
        return self.stages.events

    @property
    def auditor(self) -> Auditor:
        return self.stages.auditor

    async def run(self, stop: asyncio.Event) -> None:
        """The daemon, until ``stop``: serve status, finish what a crash left, then run the
        pipeline (feed → journal → scheduler → copier, which proves every copy) with the
        prober and the auditor beside it; on ``stop``, finish the copies in flight."""
        server = StatusServer(self.status, self.config.http.listen)
        await server.start()
        try:
            await self.check()
            await self.recover()
            log.info("replicating %s to %s; status on http://%s/status", self.config.source.bucket,
                     ", ".join(f"{r.name} ({r.bucket})" for r in self.config.regions),
                     self.config.http.listen)
            stages = self.stages
            async with asyncio.TaskGroup() as group:
                group.create_task(stages.events.run(stop) if stages.events else stages.feed.run(stop))
                group.create_task(stages.scheduler.run(stop, grace=self.config.shutdown_grace))
                group.create_task(every(stop, self.config.breaker.probe_interval, self.check))
                group.create_task(every(stop, self.config.audit.interval, self._audit,
                                        first=self.config.audit.interval))
        finally:
            await server.stop()
        log.info("stopped")

    async def sync(self) -> bool:
        """One pass: list, copy what differs, wait until every row is verified or failed."""
        await self.check()  # before the listing, so that only regions in service are inventoried
        await self.recover()
        await self.stages.feed.poll_once()
        await self.drain()
        return await self.journal.work.count() == 0

    async def drain(self) -> None:
        """Run the scheduler until nothing is pending; a region out of service fails its rows."""
        await self.check()
        await self.stages.scheduler.run(asyncio.Event(), until_idle=True)
        for region in self.stages.regions:
            problem = self.health.problems.get(region)
            if problem is not None:
                reason, _, error = problem.partition(": ")
                await self.journal.work.fail_region(region, reason, error)

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
        if changed := reloading.needs_restart(self.config, new):
            log.error("reload rejected, still running the previous config: changing %s needs a "
                      "restart", ", ".join(changed))
            return False
        old, self.config = self.config, new
        await reloading.apply(self.stages, old, new, journal=self.journal, clients=self.clients,
                              metrics=self.metrics, health=self.health)
        await self.check()
        await self.stages.inventory()
        self.stages.scheduler.wake()
        log.info("reloaded %s: regions %s", path, ", ".join(r.name for r in new.regions))
        return True

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
                if name in self.stages.regions:
                    await self.journal.work.note_region(name, exc.reason, str(exc))
                return
            if self.health.ok(name) and name in self.stages.regions:
                await self.journal.work.revive(name)
                self.stages.scheduler.wake()
        await asyncio.gather(probe("source", self.stages.source),
                             *(probe(n, s) for n, s in self.stages.regions.items()))
        await self.journal.report.save_health(self.health.problems)

    async def recover(self) -> None:
        """Abort multipart uploads a previous run left open (a crash, a kill -9)."""
        for region, key, upload_id in await self.journal.uploads.open_uploads():
            store = self.stages.regions.get(region)
            with contextlib.suppress(ReplicatorError):
                if store is not None:
                    await store.abort_upload(key, upload_id)
                await self.journal.uploads.forget_upload(region, upload_id)
                log.info("aborted multipart upload left by a previous run: key=%r region=%s",
                         key, region)
        # An upload created just before a crash may not have reached the journal:
        # abort any open upload of a key that still has work pending in that region.
        for region, store in self.stages.regions.items():
            with contextlib.suppress(ReplicatorError):
                pending = await self.journal.work.pending_keys(region)
                for key, upload_id in await store.open_uploads():
                    if key in pending:
                        await store.abort_upload(key, upload_id)
                        log.info("aborted orphaned multipart upload: key=%r region=%s", key, region)

    async def _audit(self) -> None:
        try:
            await self.stages.auditor.audit(repair=self.config.audit.repair)
        except ReplicatorError as exc:
            log.warning("audit failed: %s", exc)
        self.stages.scheduler.wake()
