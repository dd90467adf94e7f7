"""Issue 4's scenarios, each setup → fault → expected, against S3 backends through proxies."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from replicator.service import Service
from testing.faultproxy import FaultProxy

from .conftest import PART, REGIONS, World, eventually, wait_for

# Each scenario on every S3 backend, but those about the daemon (breaker, signals, memory, the
# delete guard) rather than S3, on plain moto only.
pytestmark = pytest.mark.backends()


async def run_daemon(service: Service, stop: asyncio.Event) -> asyncio.Task[None]:
    return asyncio.create_task(service.run(stop))


async def journal_empty(service: Service) -> bool:
    return await service.journal.work.count() == 0


@pytest.mark.slow
@pytest.mark.backends("moto")
async def test_1_a_refusing_region_never_holds_back_the_others(
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
            assert "r2" in service.health.problems
            proxies["r2"].refuse(False)
            await eventually(lambda: world.etags("r2") == want, timeout=120,
                             what="region 2 to catch up")
            await eventually(lambda: journal_empty(service), what="an empty journal")
        finally:
            stop.set()
            await asyncio.wait_for(daemon, 30)
    assert world.converged()  # and byte for byte


async def test_2_sustained_throttling_slows_the_region_and_loses_nothing(
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


async def test_3_a_reset_mid_multipart_leaves_no_partial_object(
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


async def test_6_a_crash_between_verify_and_journal_update_redoes_nothing(
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


async def test_7_a_source_object_deleted_mid_copy_ends_absent_everywhere(world: World) -> None:
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


async def test_8_an_empty_listing_deletes_nothing(world: World) -> None:
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


@pytest.mark.backends("moto")  # the delete guard and the CLI, not S3: plain moto is enough
def test_9_a_pass_over_the_delete_guard_waits_for_approval(world: World) -> None:
    for i in range(6):
        world.put(f"k{i}", b"x")
    config = world.config_file(delete_guard__max_per_pass=2)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "replicator", *args, "-c", str(config)],
                              capture_output=True, text=True, timeout=120, cwd=world.tmp)

    assert cli("sync").returncode == 0
    for i in range(3):
        world.source.delete_object(Bucket=world.buckets["source"], Key=f"k{i}")
    held = cli("sync")
    assert held.returncode == 0
    assert "DELETE GUARD: 3 deletes held back" in held.stderr
    assert all(len(world.objects(r)) == 6 for r in REGIONS)
    assert "3 deletes held back by the delete guard" in cli("status").stdout
    approved = cli("approve-deletes")
    assert approved.returncode == 0 and "released 3 held deletes" in approved.stdout
    assert cli("sync").returncode == 0
    assert world.converged() and sorted(world.objects("r1")) == ["k3", "k4", "k5"]


async def test_10_a_missing_bucket_fails_plainly_and_heals_when_created(world: World) -> None:
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


def _daemon(world: World, config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "replicator", "run", "-c", str(config)],
                                stdout=out, stderr=subprocess.STDOUT, cwd=world.tmp)


@pytest.mark.slow
@pytest.mark.backends("moto")
def test_11_sigterm_mid_backfill_exits_0_in_the_grace_period_and_restart_finishes(
        world: World, proxies: dict[str, FaultProxy]) -> None:
    for i in range(60):
        world.put(f"k{i:02d}", os.urandom(200))
    for region in REGIONS:
        proxies[region].latency = 0.05
    config = world.config_file(replication__concurrency=2, shutdown_grace=10)
    log = world.tmp / "daemon.log"
    daemon = _daemon(world, config, log)
    try:
        wait_for(lambda: len(world.objects("r1")) >= 5, what="the backfill to be under way")
    finally:
        started = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(timeout=30)
    assert code == 0, log.read_text()[-3000:]
    assert time.monotonic() - started < 10 + 5
    assert not world.converged()
    daemon = _daemon(world, config, log)
    try:
        wait_for(world.converged, timeout=120, what="the restart to finish the backfill")
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0


@pytest.mark.slow
@pytest.mark.backends("moto")
def test_12_sighup_adds_a_region_and_refuses_a_broken_config(world: World) -> None:
    for i in range(5):
        world.put(f"k{i}", os.urandom(50 + i * PART))
    r4 = world.buckets["r1"] + "-r4"
    world.clients["r1"].create_bucket(Bucket=r4)
    raw = world.raw_config()
    path = world.tmp / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    log = world.tmp / "daemon.log"
    daemon = _daemon(world, path, log)
    try:
        wait_for(world.converged, what="three regions")
        raw["regions"].append({**raw["regions"][0], "name": "r4", "bucket": r4})
        path.write_text(yaml.safe_dump(raw))
        daemon.send_signal(signal.SIGHUP)

        def r4_keys() -> list[str]:
            listed = world.clients["r1"].list_objects_v2(Bucket=r4).get("Contents", [])
            return sorted(o["Key"] for o in listed)
        wait_for(lambda: r4_keys() == [f"k{i}" for i in range(5)], what="the new region's backfill")

        raw["regions"][3]["endpoint_url"] = "not a url"
        path.write_text(yaml.safe_dump(raw))
        daemon.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload rejected" in log.read_text(), what="the broken config's rejection")
        assert "regions[3].endpoint_url: invalid URL" in log.read_text()
        world.put("after", b"still replicating")
        wait_for(lambda: world.converged() and "after" in r4_keys(), what="the old config at work")
        assert daemon.poll() is None
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0, log.read_text()[-3000:]


@pytest.mark.slow
@pytest.mark.backends("moto")
def test_13_a_256_mib_object_replicates_in_flat_memory(world: World, tmp_path: Path) -> None:
    size, part = 256 * 2**20, 8 * 2**20
    body = tmp_path / "big.bin"
    with body.open("wb") as out:
        for _ in range(size // 2**20):
            out.write(os.urandom(2**20))
    world.source.upload_file(str(body), world.buckets["source"], "huge.bin")
    config = world.config_file(replication__multipart_threshold=part, replication__part_size=part,
                               replication__parts_in_flight=4)
    proc = subprocess.Popen([sys.executable, "-m", "replicator", "sync", "-c", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=world.tmp)
    peak = 0
    while proc.poll() is None:  # sample VmHWM: the kernel's own high-water mark of RSS
        try:
            status = Path(f"/proc/{proc.pid}/status").read_text()
            peak = max(peak, int(status.split("VmHWM:")[1].split()[0]) * 1024)
        except (FileNotFoundError, IndexError, ProcessLookupError):
            pass
        try:
            proc.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            pass
    out, err = proc.communicate()
    assert proc.returncode == 0, err.decode()[-3000:]
    bound = 200 * 2**20  # 4 parts in flight x 8 MiB, plus the interpreter and its libraries
    print(f"peak RSS {peak / 2**20:.0f} MiB for a {size // 2**20} MiB object (bound {bound // 2**20} MiB)")
    assert 0 < peak < bound
    head = world.clients["r2"].head_object(Bucket=world.buckets["r2"], Key="huge.bin")
    assert head["ContentLength"] == size
