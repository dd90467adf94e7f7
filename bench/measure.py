"""Wall time, CPU and peak RSS of client processes, from the kernel's own accounting.

Each tool runs under ``launch.py``, which reaps it with ``wait4``: its rusage is
what ``/usr/bin/time -v`` reports (``ru_maxrss`` is the peak resident set), so no
extra binary is needed. A pidfd per launcher lets several processes started
together be waited for under one deadline without polling.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

LAUNCHER = Path(__file__).with_name("launch.py")


@dataclass(frozen=True)
class Command:
    argv: list[str]
    env: dict[str, str]
    output: Path  # stdout and stderr both go here
    cwd: Path | None = None


@dataclass(frozen=True)
class Usage:
    """What running one or more processes together cost."""

    wall: float  # seconds from the first start until the last exit
    cpu: float  # user + system seconds, summed over the processes
    rss_sum: int  # bytes: the processes' peaks added up (they run at the same time)
    rss_max: int  # bytes: the largest single peak
    codes: list[int] = field(default_factory=list)  # exit codes; -N: killed by signal N
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return not self.timed_out and all(code == 0 for code in self.codes)


def run(commands: list[Command], timeout: float) -> Usage:
    """Start every command at once and wait for all of them (killing them all at the deadline)."""
    launched: dict[int, tuple[subprocess.Popen[bytes], Path]] = {}
    timed_out = False
    try:
        for cmd in commands:
            report = cmd.output.with_suffix(".rusage")
            report.unlink(missing_ok=True)
            with cmd.output.open("ab") as out:
                proc = subprocess.Popen(
                    [sys.executable, "-S", str(LAUNCHER), str(report), *cmd.argv],
                    env=cmd.env, cwd=cmd.cwd, stdin=subprocess.DEVNULL, stdout=out,
                    stderr=subprocess.STDOUT, start_new_session=True)
            launched[os.pidfd_open(proc.pid)] = (proc, report)
        waiting = set(launched)
        deadline = time.monotonic() + timeout
        while waiting:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            ready, _, _ = select.select(list(waiting), [], [], remaining)
            waiting -= set(ready)
    finally:
        for fd, (proc, _) in launched.items():
            if proc.poll() is None:  # a deadline, an error or Ctrl-C: its whole group goes
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            os.close(fd)
    reports = [r.read_text().split() for _, r in launched.values() if r.exists()]
    starts, ends, users, systems, peaks, codes = zip(*reports, strict=True) if reports else ((),) * 6
    return Usage(
        wall=max(map(float, ends), default=0.0) - min(map(float, starts), default=0.0),
        cpu=sum(map(float, users)) + sum(map(float, systems)),
        rss_sum=sum(map(int, peaks)) * 1024,  # Linux reports KiB
        rss_max=max(map(int, peaks), default=0) * 1024,
        codes=[int(c) for c in codes] + [-9] * (len(launched) - len(reports)),
        timed_out=timed_out,
    )
