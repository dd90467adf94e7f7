"""Issue 4's scenarios, each setup → fault → expected, against S3 backends through proxies.

The service runs in-process here; the scenarios about the process itself (signals, the
delete guard's CLI, memory) are in tests/system/test_under_fire.py."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from replicator.service import Service
from testing.faultproxy import FaultProxy

from ..conftest import PART, REGIONS, World, eventually

# Each scenario on every S3 backend, but those about the daemon (the breaker) rather than S3,
# on plain moto only.
pytestmark = pytest.mark.backends()


async def run_daemon(service: Service, stop: asyncio.Event) -> asyncio.Task[None]:
    return asyncio.create_task(service.run(stop))


async def journal_empty(service: Service) -> bool:
    return await service.journal.work.count() == 0


@pytest.mark.slow
@pytest.mark.backends("moto")
async def test_a_refusing_region_never_holds_back_the_others(
        world: World, proxies: dict[str, FaultProxy]) -> None:
    proxies["r2"].refuse()
    config = world.config(breaker__probe_interval=0.3, replication__concurrency=16)
    stop = asyncio.Event()
    async with Service(config) as service:
        daemon = await run_daemon(service, stop)
        try:
            await asyncio.to_thread(lambda: [world.put(f"obj/{i:04d}", b"%d" % i) for i in range(1000)])
            want = await asyncio.to_thread(world.etags, "source")
            await eventually(lambda: world.etags("r1") == want and world.etags("r3") == want,
                             timeout=120, what="regions 1 and 3 to complete while region 2 is down")
            assert await service.journal.work.count() == 1000  # region 2's work, waiting in the journal
            assert service.health.problems["r2"].startswith("network: ")
            proxies["r2"].refuse(False)
            await eventually(lambda: world.etags("r2") == want, timeout=120,
                             what="region 2 to catch up")
            await eventually(lambda: journal_empty(service), what="an empty journal")
        finally:
            stop.set()
            await asyncio.wait_for(daemon, 30)
    assert world.converged()  # and byte for byte


async def test_sustained_throttling_halves_only_that_regions_lane_and_loses_nothing(
        world: World, proxies: dict[str, FaultProxy]) -> None:
    for i in range(60):
        world.put(f"t/{i}", os.urandom(64))
    proxies["r3"].fail(0.3, status=503, code="SlowDown", retry_after=1)
    registry = CollectorRegistry()
    config = world.config(retry__request_attempts=6, replication__concurrency=8)
    async with Service(config, registry) as service:
        assert await service.sync()
        lanes = service.scheduler.lanes
        assert lanes["r3"].cuts > 0 and lanes["r1"].cuts == 0
        assert await service.journal.work.count(state="failed") == 0
    assert registry.get_sample_value("replicator_retries_total", {"region": "r3"}) > 0
    assert registry.get_sample_value("replicator_retries_total", {"region": "r1"}) == 0
    assert world.converged()


async def test_a_reset_mid_multipart_leaves_no_partial_object_and_no_open_upload(
        world: World, proxies: dict[str, FaultProxy]) -> None:
    world.put("big", os.urandom(10 * PART))
    # aiohttp quietly resends once on a dropped connection, so drop it more often than that.
    proxies["r1"].reset_mid_body(count=3, methods={"PUT"}, path_contains="partNumber=5")
    async with Service(world.config(retry__request_attempts=1)) as service:
        assert await service.sync()
        assert service.scheduler.tally["r1"]["failed"] >= 1
    assert [s for m, path, s in proxies["r1"].log if "partNumber=5" in path].count(None) == 3
    assert world.converged()
    assert world.open_uploads() == {r: [] for r in REGIONS}


async def test_a_crash_between_verify_and_journal_update_copies_and_counts_nothing_again(
        world: World, proxies: dict[str, FaultProxy]) -> None:
    for i in range(5):
        world.put(f"k{i}", os.urandom(100 + i * PART))
    journal = Path(world.config().journal.path)
    async with Service(world.config()) as service:
        await service.feed.poll_once()
    snapshot = journal.with_suffix(".snapshot")
    shutil.copy(journal, snapshot)  # the journal as it was before the copies were recorded
    async with Service(world.config()) as service:
        assert await service.sync()
    assert world.converged()
    shutil.copy(snapshot, journal)
    for suffix in ("-wal", "-shm"):
        Path(str(journal) + suffix).unlink(missing_ok=True)
    for proxy in proxies.values():
        proxy.reset()
    registry = CollectorRegistry()
    async with Service(world.config(), registry) as service:
        assert await service.journal.work.count() == 15
        await service.drain()
        assert await service.journal.work.count() == 0
        assert {r: dict(service.scheduler.tally[r]) for r in REGIONS} == {
            r: {"skipped": 5, "bytes": 0} for r in REGIONS}
    assert all(proxies[r].requests["PUT"] == 0 and proxies[r].requests["POST"] == 0 for r in REGIONS)
    assert registry.get_sample_value("replicator_objects_replicated_total",
                                     {"region": "r1", "operation": "put"}) == 0


async def test_a_source_object_deleted_mid_copy_ends_absent_everywhere(world: World) -> None:
    for key in ("keep", "doomed", "doomed-big"):
        world.put(key, os.urandom(4 * PART if "big" in key else 10))
    async with Service(world.config()) as service:
        await service.feed.poll_once()  # planned: copy all three
        for key in ("doomed", "doomed-big"):
            world.source.delete_object(Bucket=world.buckets["source"], Key=key)
        await service.drain()
        assert await service.journal.work.count() == 0
    for region in REGIONS:
        assert sorted(world.objects(region)) == ["keep"]


async def test_a_source_that_lists_empty_holds_every_delete(world: World) -> None:
    for i in range(3):
        world.put(f"k{i}", b"x")
    async with Service(world.config()) as service:
        assert await service.sync()
        for i in range(3):
            world.source.delete_object(Bucket=world.buckets["source"], Key=f"k{i}")
        diff = await service.feed.poll_once()
        assert (diff.listed, diff.deletes, diff.held) == (0, 0, 3)
        await service.drain()
    assert all(len(world.objects(r)) == 3 for r in REGIONS)


async def test_a_missing_region_bucket_fails_with_its_reason_and_heals_when_created(world: World) -> None:
    world.clients["r3"].delete_bucket(Bucket=world.buckets["r3"])
    world.put("a", b"1")
    world.put("b", b"2")
    stop = asyncio.Event()
    async with Service(world.config(breaker__probe_interval=0.3)) as service:
        daemon = await run_daemon(service, stop)
        try:
            await eventually(lambda: world.objects("r1") == world.objects("source") ==
                             world.objects("r2"), what="the healthy regions")

            async def reasons() -> set[tuple[str, str | None]]:
                return {(f.region, f.reason) for f in await service.journal.report.failures()}

            async def stamped() -> bool:
                return await reasons() == {("r3", "no_such_bucket")}
            await eventually(stamped, what="r3's items to carry the reason")
            assert service.health.problems["r3"].startswith("no_such_bucket")
            world.clients["r3"].create_bucket(Bucket=world.buckets["r3"])
            await eventually(world.converged, what="r3 to complete without a restart")
            await eventually(lambda: journal_empty(service), what="an empty journal")
        finally:
            stop.set()
            await asyncio.wait_for(daemon, 30)
