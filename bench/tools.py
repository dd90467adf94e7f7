"""The contenders, each run as its own process: `replicator sync` and three parallel `rclone copy`."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from testing.motostack import HOST, free_port

from . import measure
from .servers import ACCESS_KEY, REGIONS, SECRET_KEY, rclone_binary, rclone_env

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Bucket:
    url: str
    name: str


@dataclass(frozen=True)
class ReplicatorOptions:
    concurrency: int
    multipart_threshold: int
    part_size: int
    parts_in_flight: int


def replicator_config(source: Bucket, regions: list[Bucket], options: ReplicatorOptions,
                      journal: Path, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    creds = {"access_key_id": ACCESS_KEY, "secret_access_key": SECRET_KEY}
    return {
        "source": {"bucket": source.name, "endpoint_url": source.url, "region": "us-east-1",
                   "credentials": creds},
        "regions": [{"name": name, "bucket": b.name, "endpoint_url": b.url, "region": name,
                     "credentials": creds} for name, b in zip(REGIONS, regions, strict=True)],
        "replication": {"concurrency": options.concurrency,
                        "multipart_threshold": options.multipart_threshold,
                        "part_size": options.part_size, "parts_in_flight": options.parts_in_flight,
                        "checksum_algorithm": "sha256", "exclude_prefixes": list(exclude)},
        "journal": {"path": str(journal)},
        "http": {"listen": f"{HOST}:{free_port()}"},
    }


def replicator_sync(rundir: Path, source: Bucket, regions: list[Bucket],
                    options: ReplicatorOptions, timeout: float, *,
                    journal: Path | None = None, exclude: tuple[str, ...] = ()) -> measure.Usage:
    """One `replicator sync`; a fresh journal in ``rundir`` unless one is given.

    Logs at WARNING: at INFO it writes a line per copy, which rclone does not.
    """
    rundir.mkdir(parents=True, exist_ok=True)
    config = rundir / "replicator.yaml"
    config.write_text(yaml.safe_dump(replicator_config(
        source, regions, options, journal or rundir / "journal.db", exclude), allow_unicode=True))
    argv = [sys.executable, "-m", "replicator", "sync", "-c", str(config), "--log-level", "WARNING"]
    return measure.run([measure.Command(argv, dict(os.environ), rundir / "replicator.out", ROOT)],
                       timeout)


def _remote(name: str, bucket: Bucket, provider: str) -> dict[str, str]:
    prefix = f"RCLONE_CONFIG_{name}_"
    return {prefix + k: v for k, v in {
        "TYPE": "s3", "PROVIDER": provider, "ENDPOINT": bucket.url, "REGION": "us-east-1",
        "ACCESS_KEY_ID": ACCESS_KEY, "SECRET_ACCESS_KEY": SECRET_KEY, "FORCE_PATH_STYLE": "true",
    }.items()}


def rclone_copy(rundir: Path, workdir: Path, source: Bucket, regions: list[Bucket],
                flags: list[str], provider: str, timeout: float) -> measure.Usage:
    """`rclone copy src:bucket dstN:bucket` for the three regions, started together.

    Remotes come from RCLONE_CONFIG_* variables, so no config file is written.
    """
    rundir.mkdir(parents=True, exist_ok=True)
    env = rclone_env(workdir) | _remote("SRC", source, provider)
    commands = []
    for n, region in enumerate(regions, 1):
        remote_env = env | _remote(f"DST{n}", region, provider)
        argv = [rclone_binary(), "copy", f"SRC:{source.name}", f"DST{n}:{region.name}", *flags]
        commands.append(measure.Command(argv, remote_env, rundir / f"rclone-{n}.out"))
    return measure.run(commands, timeout)


def bare_listing(rundir: Path, source: Bucket, timeout: float) -> measure.Usage:
    """`python -m bench.listing`: the source listed with the replicator's client library."""
    rundir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "bench.listing", source.url, source.name]
    return measure.run([measure.Command(argv, dict(os.environ), rundir / "listing.out", ROOT)],
                       timeout)
