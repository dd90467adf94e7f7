"""Every stage of one replicator, built from its config in one place."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from . import inventory
from .auditor import Auditor
from .clients import Clients
from .config import Config, Region
from .copier import Copier
from .errors import Throttled
from .events import EventsFeed
from .feed import PollFeed
from .health import Health
from .journal import Journal
from .metrics import Metrics
from .queue import SqsQueue
from .retry import RequestRetry
from .s3 import ObjectStore, S3Store
from .scheduler import Scheduler


@dataclass
class Stages:
    """The pipeline: feed (or events) → journal → scheduler → copier (which proves every
    copy), and the auditor beside it; the stores they read and write; the request retries."""

    retry: RequestRetry
    source: ObjectStore
    regions: dict[str, ObjectStore]
    copier: Copier
    scheduler: Scheduler
    feed: PollFeed
    events: EventsFeed | None
    auditor: Auditor
    #: List the regions in service that have many copies to probe (see inventory.py).
    inventory: Callable[[], Awaitable[None]]


async def region_store(clients: Clients, region: Region, retry: RequestRetry) -> S3Store:
    return S3Store(region.name, await clients.client_for(region), region.bucket, retry,
                   write_args=region.write_args())


async def build(cfg: Config, journal: Journal, clients: Clients, metrics: Metrics,
                health: Health) -> Stages:
    """Build every stage; each gets the slice of the journal it needs and nothing more."""
    def retried(name: str, exc: BaseException) -> None:
        metrics.retries.labels(name).inc()
        if isinstance(exc, Throttled) and name in stages.scheduler.lanes:
            stages.scheduler.lanes[name].throttled()

    async def take_inventory() -> None:
        allowed = health.allowed(list(stages.regions))
        serving = {n: s for n, s in stages.regions.items() if n in allowed}
        await inventory.take(journal.inventory, serving,
                             stages.feed.options.include_prefixes or ("",))

    retry = RequestRetry(cfg.retry, on_retry=retried)
    source = S3Store("source", await clients.client_for(cfg.source), cfg.source.bucket, retry,
                     read_args=cfg.source.read_args())
    regions: dict[str, ObjectStore] = {r.name: await region_store(clients, r, retry)
                                       for r in cfg.regions}
    copier = Copier(source, regions, cfg.replication,
                    {r.name: r.storage_class for r in cfg.regions}, journal.uploads)
    scheduler = Scheduler(journal.work, copier, source, regions=list(regions),
                          concurrency=cfg.replication.concurrency, retry=cfg.retry,
                          replicate_deletes=cfg.replication.replicate_deletes,
                          wants=cfg.replication.wants, metrics=metrics, health=health)
    feed = PollFeed(source, journal.listing, regions, cfg.replication,
                    interval=cfg.feed.poll_interval, on_changes=scheduler.wake,
                    guard=cfg.delete_guard, health=health, inventory=take_inventory)
    events = None
    if cfg.feed.kind == "events":
        assert cfg.feed.queue is not None
        queue = SqsQueue(await clients.client_for(cfg.source, "sqs"), cfg.feed.queue, retry)
        events = EventsFeed(queue, feed, journal.ledger, regions, cfg.replication, cfg.feed,
                            metrics, receivers=max(1, cfg.replication.concurrency // 10),
                            on_changes=scheduler.wake)
    auditor = Auditor(source, regions, journal.listing, journal.work, cfg.replication, metrics,
                      cfg.delete_guard)
    stages = Stages(retry, source, regions, copier, scheduler, feed, events, auditor, take_inventory)
    return stages
