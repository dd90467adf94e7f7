"""Metrics, health endpoints, the status page and the auditor, against moto servers.

`replicator verify` and the JSON log lines, through the command line, are in
tests/system/test_verify.py and tests/system/test_daemon.py."""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from replicator.service import Service
from testing.faultproxy import FaultProxy
from testing.motostack import free_port

from ..conftest import PART, REGIONS, World, eventually


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:  # not listening (yet)
        return 0, ""


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    assert value is not None, f"no sample {name}{labels}"
    return value


async def test_counters_equal_what_a_sync_replicated(world: World) -> None:
    sizes = [0, 10, 200, 3 * PART + 7]
    for i, size in enumerate(sizes):
        world.put(f"k{i}", os.urandom(size))
    registry = CollectorRegistry()
    async with Service(world.config(), registry) as service:
        assert await service.sync()
        await service.status.observe()
    for region in REGIONS:
        assert sample(registry, "replicator_objects_replicated_total", region=region,
                      operation="put") == len(sizes)
        assert sample(registry, "replicator_bytes_replicated_total", region=region,
                      operation="put") == sum(sizes)
        assert sample(registry, "replicator_replication_lag_seconds_count", region=region) == len(sizes)
        assert sample(registry, "replicator_backlog_objects", region=region) == 0
        assert sample(registry, "replicator_oldest_pending_age_seconds", region=region) == 0
        assert sample(registry, "replicator_region_up", region=region) == 1
    assert sample(registry, "replicator_objects_by_replicas", replicas="3") == len(sizes)

    # A second pass with the journal lost finds everything in place: nothing is counted twice.
    os.remove(world.tmp / "journal.db")
    registry = CollectorRegistry()
    async with Service(world.config(), registry) as service:
        assert await service.sync()
    assert sample(registry, "replicator_objects_replicated_total", region="r1", operation="put") == 0


async def test_deletes_are_counted_by_operation(world: World) -> None:
    world.put("gone", b"x")
    world.put("stays", b"y")
    async with Service(world.config()) as service:
        assert await service.sync()
    world.source.delete_object(Bucket=world.buckets["source"], Key="gone")
    registry = CollectorRegistry()
    async with Service(world.config(), registry) as service:
        assert await service.sync()
    assert sample(registry, "replicator_objects_replicated_total", region="r3",
                  operation="delete") == 1


@pytest.fixture
def r2_proxy(world: World) -> Iterator[FaultProxy]:
    proxy = FaultProxy(world.endpoints["r2"]).start()
    world.endpoints["r2"] = proxy.endpoint
    try:
        yield proxy
    finally:
        proxy.stop()


async def test_each_region_lag_ends_when_that_region_has_the_copy(
        world: World, proxies: dict[str, FaultProxy]) -> None:
    """A slow region does not lend its lag to the others copied from the same read."""
    count, delay = 4, 1.5
    for i in range(count):
        world.put(f"k{i}", os.urandom(100 + i))
    proxies["r3"].latency = delay  # every request to r3 waits this long before it is served
    registry = CollectorRegistry()
    async with Service(world.config(), registry) as service:
        assert await service.sync()

    def lag_sum(region: str) -> float:
        return sample(registry, "replicator_replication_lag_seconds_sum", region=region)
    # Each r3 copy ends at least ``delay`` after its read; r1's copies do not wait for it.
    assert lag_sum("r3") - lag_sum("r1") >= count * delay * 0.5


async def test_a_stuck_region_shows_in_lag_up_and_readyz_until_it_recovers(
        world: World, r2_proxy: FaultProxy) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = world.config(http__listen=f"127.0.0.1:{port}", breaker__probe_interval=0.2)
    registry = CollectorRegistry()
    stop = asyncio.Event()
    async with Service(config, registry) as service:
        daemon = asyncio.create_task(service.run(stop))
        try:
            await eventually(lambda: get(f"{base}/healthz")[0] == 200, what="the HTTP server")
            await eventually(lambda: get(f"{base}/readyz")[0] == 200, what="ready")
            r2_proxy.refuse()
            status, body = await eventually(
                lambda: (r := get(f"{base}/readyz"))[0] == 503 and r, what="/readyz to fail")
            assert list(json.loads(body)["problems"]) == ["r2"]
            assert json.loads(body)["problems"]["r2"].startswith("network: ")

            world.put("während", os.urandom(100))
            await eventually(lambda: "während" in world.objects("r1") and
                             "während" in world.objects("r3"), what="healthy regions")

            async def age(region: str) -> float:
                await asyncio.to_thread(get, f"{base}/metrics")  # a scrape refreshes the gauges
                return sample(registry, "replicator_oldest_pending_age_seconds", region=region)

            async def lagging() -> float:
                return await age("r2")
            first = await eventually(lagging, what="r2 lag to show")

            async def rising() -> bool:
                return await age("r2") > first + 0.3
            await eventually(rising, what="r2 lag to rise")
            assert await age("r1") == await age("r3") == 0
            assert sample(registry, "replicator_region_up", region="r2") == 0
            assert sample(registry, "replicator_region_up", region="r1") == 1
            _, text = await asyncio.to_thread(get, f"{base}/metrics")
            assert 'replicator_region_up{region="r2"} 0.0' in text
            assert 'replicator_backlog_objects{region="r2"} 1.0' in text

            r2_proxy.refuse(False)
            await eventually(lambda: get(f"{base}/readyz")[0] == 200, what="/readyz to recover")
            async def caught_up() -> bool:
                return await age("r2") == 0
            await eventually(caught_up, what="r2 lag back to 0")
            assert sample(registry, "replicator_region_up", region="r2") == 1
            assert world.converged()

            _, page = await asyncio.to_thread(get, f"{base}/status")
            assert "<table>" in page and all(f"<td>{r}</td>" in page for r in REGIONS)
            _, raw = await asyncio.to_thread(get, f"{base}/status?format=json")
            snapshot = json.loads(raw)
            assert snapshot["regions"]["r2"]["backlog_objects"] == 0
            assert snapshot["regions"]["r2"]["last_verified"]["key"] == "während"
        finally:
            stop.set()
            await asyncio.wait_for(daemon, 30)


async def test_the_daemon_audits_and_publishes_consistency(world: World) -> None:
    world.put("a", b"1")
    world.put("b", b"2")
    registry = CollectorRegistry()
    stop = asyncio.Event()
    started = time.time()
    config = world.config(http__listen=f"127.0.0.1:{free_port()}", audit__interval=0.3)
    async with Service(config, registry) as service:
        daemon = asyncio.create_task(service.run(stop))
        try:
            await eventually(world.converged, what="replication")
            world.clients["r3"].delete_object(Bucket=world.buckets["r3"], Key="b")
            assert "b" not in world.objects("r3")
            await eventually(world.converged,
                             what="the audit to repair a replica deleted behind our back")
            await eventually(lambda: registry.get_sample_value(
                "replicator_consistency_ratio", {"region": "r3"}) == 1.0, what="ratio 1")
            last_audit = registry.get_sample_value("replicator_last_audit_timestamp_seconds",
                                                   {"region": "r3"})
            assert last_audit is not None and started < last_audit <= time.time()
        finally:
            stop.set()
            await asyncio.wait_for(daemon, 30)
