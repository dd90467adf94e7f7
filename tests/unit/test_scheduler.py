"""Scheduler decisions: on the real journal (a temp SQLite file) and in-memory stores.

What is copied, what is postponed and until when, what is parked, what a region with an
open breaker gets, and how a source that moved under a copy is queued again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest
from prometheus_client import CollectorRegistry

from replicator import errors
from replicator.config import Retry
from replicator.copier import Copier
from replicator.health import Health
from replicator.journal import Journal, Pending
from replicator.metrics import Metrics
from replicator.model import Change, Kind
from replicator.s3 import Head
from replicator.scheduler import PARKED, Scheduler
from testing.fakes import MemoryStore

from .conftest import REGIONS, UploadLog, options

ALL = list(REGIONS)
#: Back-offs short enough that a retry comes within a test, long enough to be measured.
RETRY = Retry(item_attempts=3, item_backoff=0.05, item_backoff_max=0.05, failed_interval=600)


@dataclass
class Rig:
    journal: Journal
    source: MemoryStore
    regions: dict[str, MemoryStore]
    scheduler: Scheduler
    health: Health
    registry: CollectorRegistry

    async def queue(self, key: str, body: bytes, regions: list[str] = ALL) -> Change:
        """Put ``key`` at the source and queue its change, as the feed would."""
        self.source.seed(key, body)
        obj = self.source.objects[key]
        change = Change(key, Kind.PUT, obj.etag, len(body), obj.last_modified,
                        origin=obj.last_modified)
        await self.journal.work.enqueue(change, regions)
        return change

    async def run_idle(self) -> None:
        """Run until nothing is pending in a region whose breaker is closed."""
        await asyncio.wait_for(self.scheduler.run(asyncio.Event(), until_idle=True), 10)

    async def run_until(self, done: Callable[[], Awaitable[bool]]) -> None:
        """Run until ``done()`` holds, then stop the scheduler the way SIGTERM does."""
        stop = asyncio.Event()
        running = asyncio.create_task(self.scheduler.run(stop, grace=5))
        try:
            async with asyncio.timeout(10):
                while not await done():
                    await asyncio.sleep(0.005)
        finally:
            stop.set()
            await running

    async def rows(self) -> dict[tuple[str, str], Pending]:
        return {(p.change.key, p.region): p
                for p in await self.journal.work.due(float("inf"), 1000, set(self.regions), set())}

    def sample(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value


def make_rig(journal: Journal, *, retry: Retry = RETRY, concurrency: int = 4,
             source: MemoryStore | None = None) -> Rig:
    source = source or MemoryStore("source")
    regions = {name: MemoryStore(name) for name in REGIONS}
    registry = CollectorRegistry()
    metrics = Metrics(registry, ALL)
    health = Health(metrics, ALL, failures=3)
    for name in ("source", *ALL):
        health.ok(name)  # the service's first probe
    copier = Copier(source, dict(regions), options(), dict.fromkeys(regions), UploadLog())
    scheduler = Scheduler(journal.work, copier, source, regions=ALL, concurrency=concurrency,
                          retry=retry, replicate_deletes=True, wants=lambda key: True,
                          metrics=metrics, health=health)
    return Rig(journal, source, regions, scheduler, health, registry)


@pytest.fixture
def rig(journal: Journal) -> Rig:
    return make_rig(journal)


async def test_every_queued_change_is_copied_counted_once_and_leaves_the_journal(rig: Rig) -> None:
    for i in range(5):
        await rig.queue(f"k{i}", b"x" * (10 + i))
    await rig.run_idle()
    assert await rig.journal.work.count() == 0
    for name, region in rig.regions.items():
        assert sorted(region.objects) == [f"k{i}" for i in range(5)]
        assert rig.scheduler.tally[name]["copied"] == 5
        assert rig.scheduler.tally[name]["bytes"] == sum(10 + i for i in range(5))
        assert rig.sample("replicator_objects_replicated_total", region=name, operation="put") == 5
        assert rig.scheduler.last_verified[name][0] in {f"k{i}" for i in range(5)}


async def test_a_failed_attempt_is_postponed_by_the_item_back_off_then_retried(rig: Rig) -> None:
    await rig.queue("k", b"payload")
    rig.regions["r2"].fail("put", errors.TransientError("connection reset"))
    before = time.time()

    async def postponed() -> bool:
        return ("k", "r2") in await rig.rows() and await rig.journal.work.count() == 1
    await rig.run_until(postponed)
    row = (await rig.rows())[("k", "r2")]
    assert (row.attempts, row.state, row.reason) == (1, "pending", "network")
    # item_delay after one failure: item_backoff (0.05 s) with up to half of it taken off.
    assert before + 0.025 <= row.next_try <= time.time() + 0.05
    assert rig.sample("replicator_failures_total", region="r2", reason="network") == 1

    await rig.run_idle()
    assert await rig.journal.work.count() == 0
    assert rig.regions["r2"].count("put") == 2 and rig.regions["r1"].count("put") == 1


async def test_an_item_out_of_attempts_is_marked_failed_and_tried_on_the_failed_interval(
        journal: Journal) -> None:
    rig = make_rig(journal, retry=RETRY.model_copy(update={"item_attempts": 2}))
    await rig.queue("k", b"payload", ["r1"])
    rig.regions["r1"].fail("put", errors.TransientError("reset"), times=2)
    before = time.time()
    await rig.run_idle()  # nothing pending once the row is failed
    [failed] = await journal.report.failures()
    assert (failed.region, failed.state, failed.attempts, failed.reason) == ("r1", "failed", 2, "network")
    assert before + RETRY.failed_interval <= failed.next_try <= time.time() + RETRY.failed_interval
    assert rig.regions["r1"].count("put") == 2


async def test_a_missing_bucket_fails_at_once_opens_the_breaker_and_the_others_complete(
        rig: Rig) -> None:
    rig.regions["r3"].missing = True
    await rig.queue("k", b"payload")
    await rig.run_idle()
    [failed] = await rig.journal.report.failures()
    assert (failed.region, failed.state, failed.attempts, failed.reason) == (
        "r3", "failed", 1, "no_such_bucket")
    assert failed.next_try >= time.time() + RETRY.failed_interval - 5
    assert rig.health.problems["r3"].startswith("no_such_bucket:")
    assert all("k" in rig.regions[r].objects for r in ("r1", "r2"))

    # While the breaker is open, new work for the region waits in the journal untouched.
    await rig.queue("k2", b"more")
    calls = len(rig.regions["r3"].calls)
    await rig.run_idle()
    assert len(rig.regions["r3"].calls) == calls
    assert set(await rig.rows()) == {("k", "r3"), ("k2", "r3")}


async def test_a_region_that_answers_again_gets_its_failed_work_at_once(rig: Rig) -> None:
    rig.regions["r2"].missing = True
    await rig.queue("k", b"payload", ["r2"])
    await rig.run_idle()
    assert (await rig.rows())[("k", "r2")].state == "failed"
    rig.regions["r2"].missing = False
    assert rig.health.ok("r2")  # the probe sees it back: the service then revives its rows
    assert await rig.journal.work.revive("r2") == 1
    await rig.run_idle()
    assert await rig.journal.work.count() == 0 and "k" in rig.regions["r2"].objects


async def test_an_archived_source_is_parked_until_it_changes(rig: Rig) -> None:
    rig.source.seed("cold", b"frozen", storage_class="GLACIER")
    obj = rig.source.objects["cold"]
    await rig.journal.work.enqueue(Change("cold", Kind.PUT, obj.etag, 6, obj.last_modified,
                                          origin=obj.last_modified), ALL)
    await rig.run_idle()
    parked = await rig.journal.report.failures()
    assert {(p.region, p.state, p.reason, p.next_try) for p in parked} == {
        (r, "failed", "archived", PARKED) for r in REGIONS}
    assert rig.source.count("get") == 1  # one read for all regions, then no retries
    assert rig.health.allowed(ALL) == set(ALL)  # not a region outage


async def test_a_source_overwritten_during_the_copy_is_queued_again_as_it_is_now(rig: Rig) -> None:
    await rig.queue("k", b"v1")
    rig.source.before("get", lambda: rig.source.seed("k", b"v2, longer"))
    await rig.run_idle()
    assert all(region.body("k") == b"v2, longer" for region in rig.regions.values())
    assert await rig.journal.work.count() == 0
    assert await rig.journal.report.failures() == []


async def test_a_source_deleted_during_the_copy_ends_absent_everywhere(rig: Rig) -> None:
    await rig.queue("k", b"short-lived")
    rig.regions["r1"].seed("k", b"an older copy")
    rig.source.before("get", lambda: rig.source.objects.pop("k"))
    await rig.run_idle()
    assert all("k" not in region.objects for region in rig.regions.values())
    assert await rig.journal.work.count() == 0


async def test_no_more_keys_are_copied_at_once_than_the_concurrency(journal: Journal) -> None:
    class Slow(MemoryStore):
        active = peak = 0

        async def get(self, key: str, *, if_match: str, first: int | None = None,
                      last: int | None = None) -> tuple[Head, bytearray]:
            Slow.active += 1
            Slow.peak = max(Slow.peak, Slow.active)
            try:
                await asyncio.sleep(0.01)
                return await super().get(key, if_match=if_match, first=first, last=last)
            finally:
                Slow.active -= 1

    rig = make_rig(journal, concurrency=2, source=Slow("source"))
    for i in range(6):
        await rig.queue(f"k{i}", b"x")
    await rig.run_idle()
    assert Slow.peak == 2
    assert rig.source.count("get") == 6  # one read per key, whatever the regions
    assert await journal.work.count() == 0
