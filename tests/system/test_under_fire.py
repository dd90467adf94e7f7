"""Issue 4's scenarios about the process itself, each setup → fault → expected: SIGTERM and
SIGHUP to a running daemon, the delete guard through the CLI, memory while copying a large
object. The in-process scenarios are in tests/integration/test_under_fire.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from testing.faultproxy import FaultProxy

from ..conftest import PART, REGIONS, World, wait_for

# About the daemon (signals, memory, the delete guard), not S3: plain moto is enough.
pytestmark = pytest.mark.backends("moto")


def test_deletes_over_the_guard_wait_for_approve_deletes(world: World) -> None:
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


def _daemon(world: World, config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "replicator", "run", "-c", str(config)],
                                stdout=out, stderr=subprocess.STDOUT, cwd=world.tmp)


@pytest.mark.slow
def test_sigterm_mid_backfill_exits_0_within_the_grace_and_a_restart_finishes(
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
def test_sighup_backfills_a_new_region_and_keeps_the_running_config_over_a_broken_one(world: World) -> None:
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
def test_a_256_mib_object_replicates_in_under_200_mib_of_memory(world: World, tmp_path: Path) -> None:
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
