"""`replicator verify` as an operator runs it: the per-region table, the exit code, `--repair`."""

from __future__ import annotations

import os
import subprocess
import sys

from replicator.service import Service

from ..conftest import PART, REGIONS, World


def _verify(world: World, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "replicator", "verify", "-c",
                           str(world.config_file()), *args],
                          capture_output=True, text=True, timeout=120, cwd=world.tmp)


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
