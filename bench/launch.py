"""Run one command and write its resource usage: python -S bench/launch.py REPORT ARGV...

Linux carries a parent's peak RSS into a child's ``ru_maxrss`` across fork and
exec, so a tool started straight from the benchmark (which holds 64 MiB bodies
and proxy buffers) would report the benchmark's peak. This launcher is small
(about 9 MiB: run with -S, it imports little beyond os, sys and time), so the
peak it reports is the tool's own. The report is one line, ``start end user
system maxrss_kib exit_code``; start and end are time.monotonic(), which is
comparable between processes.
"""

import os
import sys
import time


def main() -> int:
    report, argv = sys.argv[1], sys.argv[2:]
    start = time.monotonic()
    pid = os.posix_spawnp(argv[0], argv, os.environ)
    _, status, usage = os.wait4(pid, 0)
    end = time.monotonic()
    code = os.waitstatus_to_exitcode(status)
    with open(report, "w") as out:
        out.write(f"{start} {end} {usage.ru_utime} {usage.ru_stime} {usage.ru_maxrss} {code}\n")
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
