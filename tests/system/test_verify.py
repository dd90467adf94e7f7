"""`replicator verify` as an operator runs it: the per-region table, the exit code, `--repair`."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from replicator.service import Service

from ..conftest import PART, REGIONS, World
from ..integration.test_real_s3 import KMS, MiB, kms_by_default, put_multipart, sync_once


def _verify(world: World, *args: str, **overrides: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "replicator", "verify", "-c",
                           str(world.config_file(**overrides)), *args],
                          capture_output=True, text=True, timeout=300, cwd=world.tmp)


async def test_verify_reports_drift_made_behind_our_back_and_repair_fixes_it(world: World) -> None:
    for i in range(6):
        world.put(f"k{i}", os.urandom(50 + i * PART))
    async with Service(world.config()) as service:
        assert await service.sync()
    r1, r2, r3 = (world.clients[r] for r in REGIONS)
    r1.delete_object(Bucket=world.buckets["r1"], Key="k1")
    r2.put_object(Bucket=world.buckets["r2"], Key="k2", Body=b"someone else's bytes")
    r3.put_object(Bucket=world.buckets["r3"], Key="stray", Body=b"extra")

    found = _verify(world)
    assert found.returncode == 1, found.stderr
    lines = found.stdout.splitlines()
    assert lines[1].split() == ["r1", "5", "1", "0", "0", "DIFFERENT"]
    assert lines[2].split() == ["r2", "5", "0", "1", "0", "DIFFERENT"]
    assert lines[3].split() == ["r3", "6", "0", "0", "1", "DIFFERENT"]
    assert sorted(lines[4:]) == sorted(["  r1  missing     'k1'", "  r2  mismatched  'k2'",
                                        "  r3  extra       'stray'"])

    repaired = _verify(world, "--repair")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert world.converged()
    assert _verify(world).returncode == 0


@pytest.mark.slow
@pytest.mark.backends("faithful")
async def test_parts_of_5_7_6_mib_a_kms_region_and_a_kms_source_replicate_and_verify(
        world: World) -> None:
    """The issue's acceptance case, at S3's real part sizes, then `verify` twice: exit 0,
    and the second audit copies nothing again."""
    parts = [os.urandom(5 * MiB), os.urandom(7 * MiB), os.urandom(6 * MiB), os.urandom(1024)]
    source_etag = put_multipart(world, "uneven", parts)
    assert world.source.head_object(Bucket=world.buckets["source"], Key="uneven",
                                    PartNumber=2)["ContentLength"] == 7 * MiB
    world.put("kms-source", os.urandom(3000), **KMS)
    put_multipart(world, "kms-multipart", [os.urandom(400), os.urandom(400), os.urandom(50)], **KMS)
    kms_by_default(world, "r2")
    real = {"replication__multipart_threshold": 8 * MiB, "replication__part_size": 8 * MiB}
    service = await sync_once(world.config(**real))
    assert world.converged()
    for region in ("r1", "r3"):  # mirrored part for part: the source's own etag
        assert world.clients[region].head_object(
            Bucket=world.buckets[region], Key="uneven")["ETag"].strip('"') == source_etag
    assert world.clients["r2"].head_object(
        Bucket=world.buckets["r2"], Key="uneven")["ServerSideEncryption"] == "aws:kms"
    assert service.scheduler.tally["r2"]["copied"] == 3
    for attempt in range(2):
        done = _verify(world, "--repair", **real)
        assert done.returncode == 0, (attempt, done.stdout, done.stderr)
        rows = [line.split() for line in done.stdout.splitlines()[1:]]
        assert rows == [[r, "3", "0", "0", "0", "consistent"] for r in REGIONS], (attempt, done.stdout)
