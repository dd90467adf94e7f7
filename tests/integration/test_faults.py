"""Faults that no backend causes by itself, injected by a proxy in front of one endpoint;
against each S3 backend."""

from __future__ import annotations

import asyncio
import os

import pytest

from replicator.errors import ReplicatorError
from replicator.feed import PollFeed
from replicator.retry import RequestRetry
from replicator.s3 import S3Store
from replicator.service import Service
from testing.faultproxy import FaultProxy

from ..conftest import PART, REGIONS, World, eventually

pytestmark = pytest.mark.backends()


async def test_a_down_region_waits_with_a_reason_while_the_others_complete(
        world: World, proxies: dict[str, FaultProxy]) -> None:
    for i in range(5):
        world.put(f"k{i}", os.urandom(100 + i * PART))
    proxies["r2"].refuse()
    stop = asyncio.Event()
    async with Service(world.config()) as service:
        daemon = asyncio.create_task(service.run(stop))
        try:
            want = await asyncio.to_thread(world.objects, "source")
            await eventually(lambda: world.objects("r1") == want and world.objects("r3") == want,
                             what="the healthy regions to complete")
            backlog = {b.region: b for b in await service.journal.report.backlog(list(REGIONS))}
            assert backlog["r1"].pending == backlog["r3"].pending == 0
            assert backlog["r2"].pending + backlog["r2"].failed == 5
            reasons = {(f.region, f.reason) for f in await service.journal.report.failures()}
            assert reasons == {("r2", "network")}

            proxies["r2"].refuse(False)
            await eventually(world.converged, what="the region to catch up after it returns")
            async def journal_empty() -> bool:
                return await service.journal.work.count() == 0
            await eventually(journal_empty, what="an empty journal")
        finally:
            stop.set()
            await asyncio.wait_for(daemon, 30)


@pytest.mark.parametrize("size", [100, 4 * PART])
async def test_a_corrupted_put_is_never_done_and_succeeds_on_retry(
        world: World, proxies: dict[str, FaultProxy], size: int) -> None:
    world.put("fragile", os.urandom(size))
    proxies["r1"].flip_request_body(count=1, methods={"PUT"}, min_size=50)
    async with Service(world.config()) as service:
        assert await service.sync()
        tally = service.scheduler.tally["r1"]
    assert tally["failed"] == 1 and tally["copied"] == 1
    assert world.converged()
    assert world.open_uploads() == {r: [] for r in REGIONS}


async def test_a_corrupted_source_read_is_never_done(world: World,
                                                     proxies: dict[str, FaultProxy]) -> None:
    world.put("fragile", os.urandom(3 * PART))
    proxies["source"].flip_response_body(count=1, methods={"GET"}, path_contains="/fragile")
    async with Service(world.config()) as service:
        assert await service.sync()
        tallies = {r: dict(service.scheduler.tally[r]) for r in REGIONS}
    assert all(t["failed"] == 1 and t["copied"] == 1 for t in tallies.values()), tallies
    assert world.converged()


async def test_a_listing_that_fails_part_way_deletes_nothing(
        world: World, proxies: dict[str, FaultProxy]) -> None:
    for i in range(6):
        world.put(f"k{i}", b"data")
    async with Service(world.config()) as service:
        assert await service.sync()
        store = S3Store("source", await service.clients.client_for(service.config.source),
                        world.buckets["source"], RequestRetry(service.config.retry), list_page=2)
        feed = PollFeed(store, service.journal.listing, list(REGIONS), service.config.replication,
                        interval=1, on_changes=lambda: None)
        proxies["source"].fail(1.0, status=500, code="InternalError",
                               path_contains="continuation-token")
        with pytest.raises(ReplicatorError):
            await feed.poll_once()
        assert await service.journal.work.count() == 0
        proxies["source"].fail(0)
        world.source.delete_object(Bucket=world.buckets["source"], Key="k0")
        diff = await feed.poll_once()
        assert (diff.listed, diff.deletes, diff.puts) == (5, 1, 0)
    assert all(len(world.objects(r)) == 6 for r in REGIONS)


async def test_an_empty_listing_from_a_missing_source_bucket_deletes_nothing(world: World) -> None:
    world.put("precious", b"data")
    async with Service(world.config()) as service:
        assert await service.sync()
    world.source.delete_object(Bucket=world.buckets["source"], Key="precious")
    world.source.delete_bucket(Bucket=world.buckets["source"])
    async with Service(world.config()) as service:
        with pytest.raises(ReplicatorError, match="NoSuchBucket"):
            await service.sync()
    assert all("precious" in world.objects(r) for r in REGIONS)
