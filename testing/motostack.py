"""Moto S3 servers in server mode, one OS process per endpoint.

Separate processes (rather than moto's in-process mock) let tests and
`make run` treat each endpoint as a real, independently killable service.
"""

from __future__ import annotations

import errno
import http.client
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent  # where `dev` imports from, whatever the cwd
_LOG_TAIL_BYTES = 2000


def free_port() -> int:
    """Return a port that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _check_port_free(port: int) -> None:
    """Fail fast: werkzeug would otherwise die and we would wait for nothing."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Same option werkzeug uses, so TIME_WAIT leftovers do not count as "in use".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise RuntimeError(
                    f"port {port} is in use on {HOST}; stop whatever holds it "
                    f"(e.g. `ss -ltnp 'sport = :{port}'`) or choose another port"
                ) from None
            raise


def answers_http(port: int) -> bool:
    """True once anything answers an HTTP GET; the status does not matter."""
    conn = http.client.HTTPConnection(HOST, port, timeout=2)
    try:
        conn.request("GET", "/")
        conn.getresponse().read()
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def _tail(log: Path | None, start: int) -> str:
    if log is None:
        return "(no log; pass log=... to keep the server's output)"
    try:
        with log.open("rb") as fh:
            fh.seek(max(start, log.stat().st_size - _LOG_TAIL_BYTES))
            return fh.read().decode(errors="replace").strip() or "(log is empty)"
    except OSError as exc:
        return f"(cannot read log {log}: {exc})"


@dataclass
class MotoServer:
    port: int
    process: subprocess.Popen[bytes]

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    @classmethod
    def start(
        cls,
        port: int | None = None,
        *,
        env: dict[str, str] | None = None,
        log: Path | None = None,
        timeout: float = 20,
        faithful: bool = False,
    ) -> MotoServer:
        """Start a server and return once it answers HTTP, or raise RuntimeError.

        ``faithful``: the AWS-faithful endpoint (``testing.aws_faithful``), moto with
        the documented S3 behaviours that plain moto lacks switched on.
        """
        if port is None:
            port = free_port()
        else:
            _check_port_free(port)
        log_start = 0
        log_file = None
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
            log_file = log.open("ab")  # append: a restart on the same log keeps history
            log_start = log_file.tell()
        module = "testing.aws_faithful" if faithful else "testing.moto_server"
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", module, "-H", HOST, "-p", str(port)],
                env={**os.environ, "PYTHONPATH": os.pathsep.join(
                    filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])), **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL if log_file is None else log_file,
                stderr=subprocess.STDOUT,
                # Own session: a terminal Ctrl-C reaches only our owner, which then
                # stops servers in order instead of them dying under a draining client.
                start_new_session=True,
            )
        finally:
            if log_file is not None:
                log_file.close()  # the child holds its own copy of the descriptor
        server = cls(port, process)
        try:
            server._wait_until_answering(timeout, log, log_start)
        except BaseException:  # Ctrl-C during startup too: never leave it running
            server.kill()
            raise
        return server

    def _wait_until_answering(self, timeout: float, log: Path | None, log_start: int) -> None:
        deadline = time.monotonic() + timeout
        while True:
            code = self.process.poll()
            # Our process first: a server that already died is reported as such,
            # not masked by something else answering on the port.
            if code is None and answers_http(self.port):
                return
            remaining = deadline - time.monotonic()
            if code is not None or remaining <= 0:
                why = (f"exited with code {code}" if code is not None
                       else f"did not answer within {timeout}s")
                raise RuntimeError(
                    f"moto server on port {self.port} {why}; log tail:\n{_tail(log, log_start)}"
                )
            try:
                # Doubles as the poll interval and as early detection of a crash.
                self.process.wait(timeout=min(0.05, remaining))
            except subprocess.TimeoutExpired:
                pass

    def stop(self, timeout: float = 10) -> None:
        """Terminate by PID, escalating to SIGKILL; safe to call repeatedly."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
                return
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def kill(self) -> None:
        """SIGKILL with no chance to clean up, as fault tests want."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
