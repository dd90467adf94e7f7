"""The service: builds the stages from a config and starts and stops them in order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from types import TracebackType

from .config import Config
from .copier import Copier
from .errors import ReplicatorError
from .feed import PollFeed
from .journal import Journal
from .retry import RequestRetry
from .s3 import Clients, ObjectStore, S3Store
from .scheduler import Scheduler

log = logging.getLogger(__name__)


class Service:
    """One replicator: source, journal, feed, scheduler and copier, wired together."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.journal = Journal(config.journal.path)
        self.clients = Clients(pool_size=config.replication.concurrency * 2 + 8)
        self.source: ObjectStore
        self.regions: dict[str, ObjectStore] = {}

    async def __aenter__(self) -> Service:
        cfg = self.config
        await self.journal.open()
        retry = RequestRetry(cfg.retry)
        self.source = S3Store("source", await self.clients.client_for(cfg.source),
                              cfg.source.bucket, retry)
        for region in cfg.regions:
            self.regions[region.name] = S3Store(region.name, await self.clients.client_for(region),
                                                region.bucket, retry)
        copier = Copier(self.source, self.regions, cfg.replication,
                        {r.name: r.storage_class for r in cfg.regions}, self.journal)
        self.scheduler = Scheduler(self.journal, copier, self.source,
                                   concurrency=cfg.replication.concurrency, retry=cfg.retry,
                                   replicate_deletes=cfg.replication.replicate_deletes,
                                   wants=cfg.replication.wants)
        self.feed = PollFeed(self.source, self.journal, list(self.regions), cfg.replication,
                             interval=cfg.feed.poll_interval, on_changes=self.scheduler.wake)
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        await self.clients.close()
        await self.journal.close()

    async def check(self) -> dict[str, str]:
        """Probe the source and every region once; log each problem plainly, return them."""
        problems: dict[str, str] = {}

        async def probe(name: str, store: ObjectStore) -> None:
            try:
                await store.check()
            except ReplicatorError as exc:
                problems[name] = f"{exc.reason}: {exc}"
                log.error("%s (bucket %s) is not usable: %s", name, getattr(store, "bucket", "?"), exc)
        await asyncio.gather(probe("source", self.source),
                             *(probe(n, s) for n, s in self.regions.items()))
        return problems

    async def recover(self) -> None:
        """Abort multipart uploads a previous run left open (a crash, a kill -9)."""
        for region, key, upload_id in await self.journal.uploads():
            store = self.regions.get(region)
            with contextlib.suppress(ReplicatorError):
                if store is not None:
                    await store.abort_upload(key, upload_id)
                await self.journal.forget_upload(region, upload_id)
                log.info("aborted multipart upload left by a previous run: key=%r region=%s",
                         key, region)
        # An upload created just before a crash may not have reached the journal:
        # abort any open upload of a key that still has work pending in that region.
        for region, store in self.regions.items():
            with contextlib.suppress(ReplicatorError):
                pending = await self.journal.pending_keys(region)
                for key, upload_id in await store.open_uploads():
                    if key in pending:
                        await store.abort_upload(key, upload_id)
                        log.info("aborted orphaned multipart upload: key=%r region=%s", key, region)

    async def sync(self) -> bool:
        """One pass: list, copy what differs, wait until every row is verified or failed."""
        await self.check()
        await self.recover()
        await self.feed.poll_once()
        await self.scheduler.run(asyncio.Event(), until_idle=True)
        return await self.journal.count() == 0

    async def run(self, stop: asyncio.Event) -> None:
        """The daemon: poll and copy until ``stop`` is set, then drain within the grace period."""
        await self.check()
        await self.recover()
        log.info("replicating %s to %s", self.config.source.bucket,
                 ", ".join(f"{r.name} ({r.bucket})" for r in self.config.regions))
        async with asyncio.TaskGroup() as group:
            group.create_task(self.feed.run(stop))
            group.create_task(self.scheduler.run(stop, grace=self.config.shutdown_grace))
        log.info("stopped")
