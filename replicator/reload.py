"""SIGHUP: a new config applied to the running stages, or rejected whole with the reason."""

from __future__ import annotations

import logging

from .clients import Clients
from .config import Config
from .health import Health
from .journal import Journal
from .lanes import Lane
from .metrics import Metrics
from .wiring import Stages, region_store

log = logging.getLogger(__name__)

#: What only a restart can change.
FIXED = ("source", "journal", "http")


def needs_restart(old: Config, new: Config) -> list[str]:
    """The changed fields that a running service cannot take."""
    changed = [name for name in FIXED if getattr(new, name) != getattr(old, name)]
    if (new.feed.kind, new.feed.queue) != (old.feed.kind, old.feed.queue):
        changed.append("feed.kind or feed.queue")
    return changed


async def apply(stages: Stages, old: Config, new: Config, *, journal: Journal, clients: Clients,
                metrics: Metrics, health: Health) -> None:
    """Regions added (and backfilled), changed or removed; every limit applied at once."""
    before = {r.name: r for r in old.regions}
    for region in new.regions:
        if before.get(region.name) != region:
            stages.regions[region.name] = await region_store(clients, region, stages.retry)
            stages.copier.storage_classes[region.name] = region.storage_class
        if region.name not in before:
            metrics.add_region(region.name)
            health.add(region.name)
            stages.scheduler.lanes[region.name] = Lane(new.replication.concurrency)
            queued = await journal.work.backfill(region.name, new.replication.wants)
            log.info("new region %s: %d objects queued for backfill", region.name, queued)
    for name in set(before) - {r.name for r in new.regions}:
        for table in (stages.regions, stages.scheduler.lanes, stages.copier.storage_classes):
            table.pop(name, None)
        health.problems.pop(name, None)
        dropped = await journal.work.forget_region(name)
        log.warning("region %s removed from the config: %d pending items dropped", name, dropped)
    stages.retry.policy = new.retry
    stages.copier.options = stages.feed.options = stages.auditor.options = new.replication
    stages.feed.interval = new.feed.poll_interval
    stages.feed.guard = stages.auditor.guard = new.delete_guard
    scheduler = stages.scheduler
    scheduler.retry = new.retry
    scheduler.concurrency = new.replication.concurrency
    scheduler.replicate_deletes = new.replication.replicate_deletes
    scheduler.wants = new.replication.wants
    for lane in scheduler.lanes.values():
        lane.maximum = lane.limit = new.replication.concurrency
    health.threshold = new.breaker.failures
    metrics.audit_interval.set(new.audit.interval)
