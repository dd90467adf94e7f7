"""`python -m bench`: time `replicator sync` against `rclone copy` (issue 5), and measure
replication lag in events mode (issue 6).

For each endpoint flavour (moto servers, `rclone serve s3`) and workload, the
two tools copy the same source to three fresh region buckets, alternating,
``--runs`` times each; every region is verified after every run. A separate
untimed run through counting proxies gives requests per object. The `scale`
workload times an unchanged pass over a large source instead. Prints one
table, then each target as PASS or MISS. The `lag` workload (moto only, see
bench/lag.py) runs 1 and then 2 `replicator run` daemons in events mode while
writes arrive at each of ``--lag-rates`` for ``--lag-duration`` seconds, and
prints p50/p99 lag per region and the highest rate with p99 under 2 s. Exits 1
if any run failed or any region failed verification (a missed target or a slow
rate alone does not fail).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from replicator.config import Replication

from . import counting, data, lag, servers, tools
from .data import Manifest, MiB, Workload
from .measure import Usage
from .servers import FLAVOUR_LABEL, REGIONS, Endpoint
from .tools import Bucket, ReplicatorOptions

OURS, THEIRS = "replicator sync", "rclone copy ×3"
UNCHANGED, THEIRS_UNCHANGED, LISTING = "replicator sync, unchanged", "rclone copy ×3, unchanged", \
    "bare listing (aiobotocore)"


@dataclass
class Result:
    """Every run of one tool on one workload and flavour."""

    workload: Workload
    flavour: str
    tool: str
    runs: list[Usage] = field(default_factory=list)
    counts: counting.Counts | None = None

    @property
    def wall(self) -> float:
        return statistics.median(u.wall for u in self.runs)

    @property
    def cpu(self) -> float:
        return statistics.median(u.cpu for u in self.runs)

    @property
    def rss(self) -> int:
        """The highest peak of any run (for rclone, the three processes' peaks summed)."""
        return max(u.rss_sum for u in self.runs)

    @property
    def rss_text(self) -> str:
        largest = max(u.rss_max for u in self.runs)
        return f"{self.rss / MiB:.0f}" + (f" (max {largest / MiB:.0f})" if largest < self.rss else "")


class Bench:
    """One benchmark: runs what the arguments select and collects results and failures."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.options = ReplicatorOptions(args.concurrency, data.parse_size(args.multipart_threshold),
                                         data.parse_size(args.part_size), args.parts_in_flight)
        self.rclone_flags = shlex.split(args.rclone_flags)
        self.results: list[Result] = []
        self.failures: list[str] = []
        self.notes: list[str] = []
        self.lag: lag.LagBench | None = None

    def log(self, text: str) -> None:
        """Progress on stderr, so stdout carries only the report."""
        print(text, file=sys.stderr, flush=True)

    # -- the whole run ---------------------------------------------------------

    def run(self) -> None:
        for flavour in self.args.flavour:
            workloads = [w for w in self.args.workloads if flavour == "rclone" or w.name != "scale"]
            if len(workloads) < len(self.args.workloads):
                self.notes.append("scale runs on rclone serve s3 only (its source is written to disk)")
            if workloads:
                self.flavour(flavour, workloads)
        if self.args.lag:
            self.lag = lag.LagBench(self.args.lag_rates, self.args.lag_duration, self.options,
                                    self.workdir / "lag", self.log)
            self.lag.run()
            self.failures += self.lag.failures

    def flavour(self, flavour: str, workloads: list[Workload]) -> None:
        manifests: dict[str, Manifest] = {}
        if flavour == "rclone":
            # Written before the servers start: rclone serve s3 caches directory listings.
            source = servers.rclone_root(self.workdir, "source")
            for w in workloads:
                self.log(f"writing the {w.name} source ({w.label}) to {source / w.name}")
                manifests[w.name] = data.write_tree(source, w.name, w)
                if w.name == "scale":  # the regions start out as exact replicas (hard links)
                    for region in REGIONS:
                        data.link_tree(source / w.name,
                                       servers.rclone_root(self.workdir, region) / w.name)
        endpoints = servers.start(flavour, self.workdir)
        try:
            for w in workloads:
                if flavour == "moto":
                    self.log(f"filling the moto source with {w.label}")
                    manifests[w.name] = data.put_all(endpoints[0].url, w.name, w)
                if w.name == "scale":
                    self.scale(endpoints, w, manifests[w.name])
                else:
                    self.copies(endpoints, w, manifests[w.name])
                if flavour == "moto":
                    data.drop_bucket(endpoints[0], w.name)
        finally:
            servers.stop(endpoints)
            data.remove_tree(self.workdir / "rclone")

    # -- full copies -------------------------------------------------------------

    def copies(self, endpoints: list[Endpoint], w: Workload, manifest: Manifest) -> None:
        flavour = endpoints[0].flavour
        ours, theirs = Result(w, flavour, OURS), Result(w, flavour, THEIRS)
        self.results += [ours, theirs]
        for run in range(1, self.args.runs + 1):
            for result in (ours, theirs) if run % 2 else (theirs, ours):  # alternate who goes first
                result.runs.append(self.copy(endpoints, result, manifest, str(run)))
        if self.args.count:
            for result in (ours, theirs):
                with counting.proxies(endpoints) as (urls, started):
                    self.copy(endpoints, result, manifest, "counted", via=urls)
                    result.counts = counting.tally(started)

    def copy(self, endpoints: list[Endpoint], result: Result, manifest: Manifest, label: str,
             via: dict[str, str] | None = None) -> Usage:
        """One full copy into fresh region buckets, verified, then the buckets are dropped."""
        w, source, regions = result.workload, endpoints[0], endpoints[1:]
        urls = via or {e.name: e.url for e in endpoints}
        slug = "ours" if result.tool == OURS else "rclone"
        bucket = f"{w.name}-{slug}-{label}"
        rundir = self.workdir / "runs" / f"{result.flavour}-{bucket}"
        for region in regions:
            data.create_bucket(region, bucket)
        targets = [Bucket(urls[r.name], bucket) for r in regions]
        src = Bucket(urls[source.name], w.name)
        if result.tool == OURS:
            usage = tools.replicator_sync(rundir, src, targets, self.options, self.args.timeout)
        else:
            provider = "Rclone" if result.flavour == "rclone" else "Other"
            usage = tools.rclone_copy(rundir, self.workdir, src, targets, self.rclone_flags,
                                      provider, self.args.timeout)
        what = f"{w.name}/{result.flavour} {result.tool} run {label}"
        problems = self.usage_problems(usage, rundir)
        with ThreadPoolExecutor(len(regions)) as pool:
            for found in pool.map(lambda r: data.verify(
                    r, bucket, manifest, sample=self.sample(w),
                    part_size=self.options.part_size), regions):
                problems += found
        self.report_run(what, usage, problems)
        with ThreadPoolExecutor(len(regions)) as pool:
            list(pool.map(lambda r: data.drop_bucket(r, bucket), regions))
        return usage

    def sample(self, w: Workload) -> int:
        """Objects read back whole per region: at least one even of the 64 MiB ones."""
        wanted: int = self.args.verify_sample
        return max(1, min(wanted, w.count if w.size < MiB else 1))

    def usage_problems(self, usage: Usage, rundir: Path) -> list[str]:
        if usage.timed_out:
            return [f"timed out after {self.args.timeout:.0f}s (output in {rundir})"]
        if not usage.ok:
            return [f"exit codes {usage.codes} (output in {rundir})"]
        return []

    def report_run(self, what: str, usage: Usage, problems: list[str]) -> None:
        verdict = "verified" if not problems else f"FAILED: {len(problems)} problems"
        self.log(f"  {what}: {usage.wall:.1f}s, {usage.cpu:.1f} CPU s, "
                 f"peak RSS {usage.rss_sum / MiB:.0f} MiB — {verdict}")
        for problem in problems[:10]:
            self.log(f"    {problem}")
        self.failures += [f"{what}: {p}" for p in problems]

    # -- scale: an unchanged pass ---------------------------------------------------

    def scale(self, endpoints: list[Endpoint], w: Workload, manifest: Manifest) -> None:
        """Time a pass that must copy nothing, against rclone's and against a bare listing.

        The regions hold hard links of the source files (exact replicas). The
        journal a previous pass would leave comes from one `replicator sync` that
        excludes every key: it records the complete listing and copies nothing,
        where a real first copy of this many objects would take most of the budget.
        """
        src = Bucket(endpoints[0].url, w.name)
        targets = [Bucket(r.url, w.name) for r in endpoints[1:]]
        journal = self.workdir / "runs" / "scale-journal.db"
        rundir = self.workdir / "runs" / "scale-seed"
        seed = tools.replicator_sync(rundir, src, targets, self.options, self.args.timeout,
                                     journal=journal, exclude=(f"{w.name}/",))
        self.report_run("scale: first pass recording the listing (every key excluded)", seed,
                        self.usage_problems(seed, rundir))
        self.notes.append(f"scale: the journal was seeded by a `replicator sync` excluding every key "
                          f"({seed.wall:.1f}s, peak RSS {seed.rss_sum / MiB:.0f} MiB); the regions "
                          "are hard links of the source files; a replica whose inode changed was "
                          "rewritten, i.e. copied")
        ours, theirs, listing = (Result(w, "rclone", t) for t in (UNCHANGED, THEIRS_UNCHANGED, LISTING))
        self.results += [ours, theirs, listing]
        for run in range(1, self.args.runs + 1):
            for result in (ours, theirs) if run % 2 else (theirs, ours):
                rundir = self.workdir / "runs" / f"scale-{run}-{'ours' if result is ours else 'rclone'}"
                if result is ours:
                    usage = tools.replicator_sync(rundir, src, targets, self.options,
                                                  self.args.timeout, journal=journal)
                else:
                    usage = tools.rclone_copy(rundir, self.workdir, src, targets, self.rclone_flags,
                                              "Rclone", self.args.timeout)
                result.runs.append(usage)
                problems = self.usage_problems(usage, rundir) + self.untouched(endpoints, manifest)
                self.report_run(f"scale {result.tool} run {run}", usage, problems)
            rundir = self.workdir / "runs" / f"scale-{run}-listing"
            usage = tools.bare_listing(rundir, src, self.args.timeout)
            listing.runs.append(usage)
            problems = self.usage_problems(usage, rundir)
            listed = (rundir / "listing.out").read_text().split()
            if not problems and listed[-1:] != [str(w.count)]:
                problems.append(f"listed {listed[-1:]} keys, expected {w.count}")
            self.report_run(f"scale bare listing run {run}", usage, problems)

    def untouched(self, endpoints: list[Endpoint], manifest: Manifest) -> list[str]:
        """Every region still holds every object, and a pass over an unchanged source copied none."""
        bucket = manifest.workload.name
        problems = []
        source = endpoints[0].root
        for region in endpoints[1:]:
            assert source is not None and region.root is not None, "only rclone serves a directory"
            copied, found = data.rewritten(source / bucket, region.root / bucket, manifest)
            problems += [f"{region.name}: {p}" for p in found]
            if copied:
                problems.append(f"{region.name}: {copied} objects copied by a pass over an "
                                "unchanged source")
        return problems


# -- the report -------------------------------------------------------------------------


def _table(headers: list[str], rows: list[list[str]]) -> str:
    """Text columns left-aligned, figures right-aligned."""
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i < 3 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def _find(results: list[Result], workload: str, flavour: str, tool: str) -> Result | None:
    return next((r for r in results if r.workload.name == workload and r.flavour == flavour
                 and r.tool == tool and r.runs), None)


def _ratio(results: list[Result], r: Result) -> float | None:
    """Our median wall time over rclone's on the same workload and endpoints."""
    other = {OURS: THEIRS, UNCHANGED: THEIRS_UNCHANGED}.get(r.tool)
    theirs = other and _find(results, r.workload.name, r.flavour, other)
    return r.wall / theirs.wall if theirs else None


def table(results: list[Result]) -> str:
    headers = ["workload", "endpoints", "tool", "wall s (median)", "runs", "obj/s", "MiB/s",
               "peak RSS MiB", "CPU s", "src GET/obj", "src other/obj", "PUT/obj/region",
               "other/obj/region", "ours/rclone"]
    rows = []
    for r in (r for r in results if r.runs):
        moved = r.tool in (OURS, THEIRS)
        requests = ["-"] * 4
        if r.counts is not None:
            reads, _, src_other = r.counts.per_object("source", r.workload.count)
            per_region = [r.counts.per_object(name, r.workload.count) for name in REGIONS]
            requests = [f"{reads:.2f}", f"{src_other:.2f}",
                        f"{statistics.mean(p[1] for p in per_region):.2f}",
                        f"{statistics.mean(p[2] for p in per_region):.2f}"]
        ratio = _ratio(results, r)
        rows.append([
            r.workload.label, FLAVOUR_LABEL[r.flavour], r.tool, f"{r.wall:.2f}",
            " ".join(f"{u.wall:.1f}" for u in r.runs), f"{r.workload.count / r.wall:,.0f}",
            f"{3 * r.workload.total / MiB / r.wall:.1f}" if moved else "-",
            r.rss_text, f"{r.cpu:.1f}", *requests,
            f"{ratio:.2f}" if ratio is not None else "",
        ])
    return _table(headers, rows)


def request_details(results: list[Result]) -> str:
    lines = []
    for r in results:
        if r.counts is None:
            continue
        lines.append(f"{r.workload.label} on {FLAVOUR_LABEL[r.flavour]}, {r.tool} "
                     f"({r.counts.bucket_level()} bucket-level requests in all):")
        for name, ops in r.counts.by_endpoint.items():
            refused = r.counts.refused[name]
            lines.append(f"  {name:<15} " + ", ".join(
                f"{op} {n}" + "".join(f" ({status} ×{k})" for (o, status), k in refused.items()
                                      if o == op) for op, n in sorted(ops.items())))
    return "\n".join(lines)


@dataclass(frozen=True)
class Target:
    text: str
    check: Callable[[list[Result]], tuple[bool, str] | None]  # None: not measured in this run


def _ratio_target(workload: str, flavour: str, limit: float) -> Target:
    def check(results: list[Result]) -> tuple[bool, str] | None:
        ours, theirs = (_find(results, workload, flavour, t) for t in (OURS, THEIRS))
        if ours is None or theirs is None:
            return None
        ratio = ours.wall / theirs.wall
        return ratio <= limit, f"{ours.wall:.1f}s / {theirs.wall:.1f}s = {ratio:.2f}"
    return Target(f"{workload} on {FLAVOUR_LABEL[flavour]}: ours/rclone wall ≤ {limit}", check)


def _large_rss(results: list[Result]) -> tuple[bool, str] | None:
    found = [r for r in results if r.workload.name == "large" and r.tool == OURS and r.runs]
    return None if not found else (max(r.rss for r in found) <= 150 * MiB,
                                   f"{max(r.rss for r in found) / MiB:.0f} MiB")


def _requests(options: ReplicatorOptions) -> Callable[[list[Result]], tuple[bool, str] | None]:
    def check(results: list[Result]) -> tuple[bool, str] | None:
        counted = [(r, r.counts) for r in results if r.tool == OURS and r.counts is not None]
        if not counted:
            return None
        ok, figures = True, []
        for r, counts in counted:
            size = r.workload.size
            parts = math.ceil(size / options.part_size) if size > options.multipart_threshold else 0
            reads, writes = (parts, parts + 2) if parts else (1, 1)  # multipart: create + complete
            src_reads, _, src_other = counts.per_object("source", r.workload.count)
            per_region = [counts.per_object(name, r.workload.count) for name in REGIONS]
            ok &= (src_reads <= reads and src_other == 0
                   and all(w <= writes and other == 0 for _, w, other in per_region))
            figures.append(
                f"{r.workload.name}/{r.flavour}: source {src_reads:.2f} GET + {src_other:.2f} "
                f"other, per region {max(w for _, w, _ in per_region):.2f} writes + "
                f"{max(o for _, _, o in per_region):.2f} other (allowed {reads} + 0, {writes} + 0)")
        return ok, "; ".join(figures)
    return check


def _scale_rss(results: list[Result]) -> tuple[bool, str] | None:
    ours = _find(results, "scale", "rclone", UNCHANGED)
    return None if ours is None else (ours.rss < 200 * MiB, f"{ours.rss / MiB:.0f} MiB")


def _scale_time(results: list[Result]) -> tuple[bool, str] | None:
    ours, listing = (_find(results, "scale", "rclone", t) for t in (UNCHANGED, LISTING))
    if ours is None or listing is None:
        return None
    return ours.wall <= 1.5 * listing.wall, \
        f"{ours.wall:.1f}s vs listing {listing.wall:.1f}s = {ours.wall / listing.wall:.2f}×"


def targets(options: ReplicatorOptions) -> list[Target]:
    return [
        _ratio_target("small", "moto", 0.5),
        _ratio_target("small", "rclone", 0.8),
        _ratio_target("large", "moto", 0.8),
        _ratio_target("large", "rclone", 0.8),
        Target("large: peak RSS of replicator sync ≤ 150 MiB", _large_rss),
        Target("requests per object ≤ 1 source GET + 1 PUT per region (multipart: parts, "
               "create, complete)", _requests(options)),
        Target("scale unchanged pass: peak RSS < 200 MiB", _scale_rss),
        Target("scale unchanged pass: wall ≤ 1.5 × bare listing", _scale_time),
    ]


def _version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout
    except OSError:
        return "?"
    return out.splitlines()[0].strip() if out.strip() else "?"


def header(args: argparse.Namespace, bench: Bench, started: datetime.datetime,
           load: tuple[float, ...], commit: str) -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    o = bench.options
    return "\n".join([
        f"replicator benchmark, {started:%Y-%m-%d %H:%M} UTC, took "
        f"{(datetime.datetime.now(datetime.UTC) - started).total_seconds() / 60:.1f} min, commit "
        f"{commit}",
        f"machine: {os.cpu_count()} cores ({cpu}), {mem:.0f} GiB; load average "
        f"{load[0]:.2f} before, {os.getloadavg()[0]:.2f} after",
        f"python {platform.python_version()}, aiobotocore {importlib.metadata.version('aiobotocore')}, "
        f"moto {importlib.metadata.version('moto')}, {_version([servers.rclone_binary(), 'version'])}",
        f"replicator: concurrency {o.concurrency}, multipart_threshold {o.multipart_threshold}, "
        f"part_size {o.part_size}, parts_in_flight {o.parts_in_flight}, sha256, log level WARNING",
        f"rclone: three `rclone copy SRC:bucket DSTn:bucket {args.rclone_flags}` started together",
    ])


METHOD = """\
wall: from start until every process exited, median of the runs. obj/s: source objects / wall.
MiB/s: bytes written to the three regions / wall. peak RSS and CPU (user + system): the client
processes' own rusage from wait4 (what /usr/bin/time -v reports); for rclone the three
processes' peaks and CPU are summed (the largest single peak in brackets); peak RSS is the
highest of the runs. Requests per object: counted by a proxy in front of every endpoint in one
separate, untimed run per tool (the proxy adds a connection per request, so timed runs go
direct): src GET = object GETs at the source, src other = other object-level requests there,
PUT/obj/region = PutObject/UploadPart/multipart create+complete per region, other/obj/region =
HEADs and other object-level requests per region; bucket-level requests (listings, HeadBucket)
are listed below the table. Every region is verified after every run: every key present with
its size and etag (the server's md5 of the bytes it stored), no extra keys, and a spread sample
read back whole and compared by md5."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", action="extend", nargs="+",
                        choices=("small", "large", "scale", "lag"),
                        help="small: 2,000 × 4 KiB; large: 8 × 64 MiB; scale: an unchanged pass "
                             "over --scale-objects; lag: events-mode replication lag under "
                             "steady writes, 1 and 2 replicas, on moto only (default: all)")
    parser.add_argument("--flavour", action="extend", nargs="+", choices=servers.FLAVOURS,
                        help="endpoints: moto servers or rclone serve s3 (default: both)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each tool (median)")
    parser.add_argument("--scale-objects", type=int, default=200_000)
    parser.add_argument("--lag-duration", type=float, default=60, metavar="SECONDS",
                        help="lag: seconds of steady writes at each rate (default: 60)")
    parser.add_argument("--lag-rates", type=float, nargs="+", default=[5, 10, 20, 30, 40, 60, 80],
                        metavar="RATE", help="lag: writes per second to try, lowest first; each "
                        "replica count stops at the first rate that misses p99 < 2 s "
                        "(default: 5 10 20 30 40 60 80)")
    parser.add_argument("--concurrency", type=int, default=32, help="replication.concurrency")
    defaults = Replication()  # the service's own defaults, so the bench measures what ships
    parser.add_argument("--multipart-threshold", default=str(defaults.multipart_threshold),
                        help="replication.multipart_threshold (default: the service's)")
    parser.add_argument("--part-size", default=str(defaults.part_size),
                        help="replication.part_size (default: the service's)")
    parser.add_argument("--parts-in-flight", type=int, default=defaults.parts_in_flight,
                        help="replication.parts_in_flight (default: the service's)")
    parser.add_argument("--rclone-flags", default="--checksum",
                        help="extra flags for every rclone copy, e.g. --rclone-flags='--checksum "
                             "--transfers 16' (--checksum: compare md5s, so an unchanged pass "
                             "needs no HEAD per object)")
    parser.add_argument("--no-count", dest="count", action="store_false",
                        help="skip the untimed runs that count requests per object")
    parser.add_argument("--verify-sample", type=int, default=50,
                        help="small objects read back whole per region after each run")
    parser.add_argument("--timeout", type=float, default=900, help="seconds allowed per run")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, configs)")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.scale_objects < 1:
        parser.error("--runs and --scale-objects must be at least 1")
    if args.lag_duration <= 0 or min(args.lag_rates) <= 0:
        parser.error("--lag-duration and --lag-rates must be positive")
    names = args.workload or ["small", "large", "scale", "lag"]
    sizes = {"small": (2000, 4 * 1024), "large": (8, 64 * MiB), "scale": (args.scale_objects, 256)}
    args.workloads = [Workload(n, *sizes[n]) for n in dict.fromkeys(names) if n != "lag"]
    args.lag = "lag" in names
    args.flavour = list(dict.fromkeys(args.flavour or servers.FLAVOURS))
    return args


def print_copies(bench: Bench) -> None:
    """The report of the full copies and the unchanged pass: table, method, notes, targets."""
    print("", table(bench.results), "", METHOD, sep="\n")
    details = request_details(bench.results)
    if details:
        print("\nrequests counted, by endpoint and operation:", details, sep="\n")
    for note in dict.fromkeys(bench.notes):
        print(f"note: {note}")
    print("\ntargets:")
    for target in targets(bench.options):
        outcome = target.check(bench.results)
        if outcome is not None:
            print(f"  {'PASS' if outcome[0] else 'MISS'}  {target.text}: {outcome[1]}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started, load = datetime.datetime.now(datetime.UTC), os.getloadavg()
    commit = _version(["git", "-C", str(tools.ROOT), "describe", "--always", "--dirty"])
    workdir = Path(tempfile.mkdtemp(prefix="replicator-bench-"))
    bench = Bench(args, workdir)
    try:
        bench.run()
    finally:
        if args.keep or bench.failures:  # a failed run's configs and output are worth a look
            print(f"work directory kept: {workdir}", file=sys.stderr)
        else:
            data.remove_tree(workdir)
    print(header(args, bench, started, load, commit))
    if args.workloads:
        print_copies(bench)
    if bench.lag is not None:
        print("", lag.report(bench.lag), sep="\n")
    if bench.failures:
        print(f"\nFAILED: {len(bench.failures)} verification problems, e.g.", *bench.failures[:10],
              sep="\n  ")
        return 1
    print("\nevery run verified in every region")
    return 0


if __name__ == "__main__":
    sys.exit(main())
