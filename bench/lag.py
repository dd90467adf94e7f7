"""The sustained-rate lag benchmark of issue 6: `replicator run` in events mode under steady writes.

For 1 and then 2 replicas (`replicator run` processes on one SQS queue, each
with its own journal and HTTP port), 4 KiB objects are written to the source at
each rate of a rising list for a fixed time, and the lag from every write to its
verified copy is measured in every region. A rate passes when the writer kept it
up, every copy arrived and p99 < 2 s in every region; for each replica count the
rate stops rising at the first one that does not pass.

Lag is measured outside the daemon's metric: from the moment the writer sent the
PUT (its own clock) to the ``time`` (UTC, milliseconds) of the daemon's per-copy JSON
log record, which is written once the copy is verified. The daemon's own lag histogram,
which counts from the S3 event time, is scraped before and after every rate as a
cross-check.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import math
import os
import textwrap
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from . import daemons, data, servers
from .daemons import SWEEP_INTERVAL, WAIT_TIME, DaemonFailed, Replica
from .data import KiB, Manifest, Workload
from .servers import ACCESS_KEY, REGIONS, SECRET_KEY, Endpoint
from .tools import ReplicatorOptions

REPLICAS = (1, 2)
SIZE = 4 * KiB
LIMIT = 2.0  # seconds: the p99 lag a rate must stay under
SUSTAINED = 0.95  # the writer kept a rate if it reached this fraction of it
WRITERS = 8  # PUTs in flight at most: the writer is open-loop, a slow PUT delays no other
DRAIN_DEADLINE = 60.0  # seconds after the last write for every copy to arrive
START_DEADLINE = 60.0  # seconds for the daemons to start and copy the warm-up objects
WARM_UP = 20  # objects copied before the first rate, so start-up costs are not measured
POLL = 0.2  # seconds between looks at the logs and the queue


# -- writing and waiting --------------------------------------------------------------------


@dataclass(frozen=True)
class Write:
    """One PUT of the writer, on its own clock (time.time(), as the daemon's log records use)."""

    start: float  # time.time() when the PUT was sent: lag counts from here
    end: float  # when it was acknowledged
    md5: str


def _write(s3: Any, bucket: str, workload: Workload, rate: float) -> list[Write]:
    """PUT the workload's objects, the i-th at i/rate seconds (open loop, paced by the clock)."""
    def put(i: int) -> Write:
        body = workload.body(i)
        start = time.time()
        s3.put_object(Bucket=bucket, Key=workload.key(i), Body=body)
        return Write(start, time.time(), hashlib.md5(body).hexdigest())

    with ThreadPoolExecutor(WRITERS) as pool:
        begin = time.monotonic()
        futures = []
        for i in range(workload.count):
            ahead = begin + i / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)  # pacing, not synchronisation: the schedule is the clock
            futures.append(pool.submit(put, i))
        return [f.result() for f in futures]


def _until(predicate: Callable[[], bool], timeout: float) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` seconds pass; whether it held."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL)
    return True


# -- figures ----------------------------------------------------------------------------------


def percentile(ordered: list[float], q: float) -> float:
    """Nearest rank: the smallest value with at least ``q`` of all values at or below it."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def quantile_bucket(buckets: dict[float, float], q: float) -> tuple[float, float] | None:
    """The bucket holding the ``q`` quantile, from cumulative counts: all that a histogram
    knows (Prometheus' histogram_quantile interpolates within it, which can be far off)."""
    total = buckets.get(math.inf, 0.0)
    if total <= 0:
        return None
    lower = 0.0
    for bound in sorted(buckets):
        if buckets[bound] >= q * total:
            return lower, bound
        lower = bound
    return lower, math.inf


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Cpu:
    """CPU seconds used so far by the daemons, the source's moto server (S3 and SQS), the
    regions' moto servers and this process (the writer): which of them a rate saturates."""

    when: float
    used: tuple[float, float, float, float]

    @classmethod
    def now(cls, replicas: list[Replica], endpoints: list[Endpoint]) -> Cpu:
        own = os.times()
        return cls(time.monotonic(), (
            sum(_cpu_seconds(r.process.pid) for r in replicas),
            _cpu_seconds(endpoints[0].server.process.pid),
            sum(_cpu_seconds(e.server.process.pid) for e in endpoints[1:]),
            own.user + own.system))

    def share(self, since: Cpu) -> tuple[float, ...]:
        """Each part's CPU between two readings, as a fraction of one core."""
        wall = self.when - since.when
        return tuple((now - then) / wall for now, then in zip(self.used, since.used, strict=True))


@dataclass(frozen=True)
class Step:
    """One rate held for the duration, with one replica count."""

    replicas: int
    rate: float
    writes: list[Write]
    lags: dict[str, list[float]]  # by region, sorted; one per copy that arrived
    missing: int  # (object, region) pairs not verified by the deadline
    shares: list[int]  # copies each replica logged
    duplicates: int  # copies beyond the first of an object to a region
    failed_attempts: int  # copy attempts logged as failed (retried by the daemon)
    daemon: dict[str, tuple[float, tuple[float, float] | None]]  # region: count, p99's bucket
    cpu: tuple[float, ...]  # daemons, source, regions, writer: fractions of one core

    @property
    def achieved(self) -> float:
        starts = [w.start for w in self.writes]
        span = max(starts) - min(starts)
        return (len(self.writes) - 1) / span if span > 0 else math.inf

    @property
    def longest_pause(self) -> float:
        """The longest time between two PUTs sent: a stalled source or machine shows here."""
        starts = sorted(w.start for w in self.writes)
        return max(b - a for a, b in itertools.pairwise(starts))

    @property
    def p99(self) -> float:
        return max((percentile(v, 0.99) for v in self.lags.values() if v), default=math.inf)

    @property
    def passed(self) -> bool:
        return not self.missing and self.achieved >= SUSTAINED * self.rate and self.p99 < LIMIT

    @property
    def verdict(self) -> str:
        if self.missing:
            return f"{self.missing} copies missing {DRAIN_DEADLINE:.0f}s after the last write"
        if self.achieved < SUSTAINED * self.rate:
            return f"writer reached only {self.achieved:.1f}/s"
        return f"p99 {'<' if self.passed else '≥'} {LIMIT:g} s"


# -- the benchmark ------------------------------------------------------------------------------


@dataclass
class Stage:
    """What the rates of one replica count share: buckets, queue, daemons and clients."""

    endpoints: list[Endpoint]
    bucket: str
    replicas: list[Replica]
    s3: Any = field(init=False)
    sqs: Any = field(init=False)
    queue_url: str = field(init=False)

    def __post_init__(self) -> None:
        self.s3 = data.client(self.endpoints[0].url, pool=WRITERS)
        self.sqs = boto3.client("sqs", endpoint_url=self.endpoints[0].url, region_name="us-east-1",
                                aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)
        self.queue_url = self.sqs.get_queue_url(QueueName=self.bucket)["QueueUrl"]

    def copied(self, keys: list[str]) -> bool:
        """Every key verified in every region, by one replica or another."""
        return len(daemons.first_copies(self.replicas, keys)) == len(keys) * len(REGIONS)

    def quiet(self) -> bool:
        """Every message acknowledged: a replica deletes one once its copies are verified."""
        attrs: dict[str, str] = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url, AttributeNames=["All"])["Attributes"]
        return attrs["ApproximateNumberOfMessages"] == \
            attrs["ApproximateNumberOfMessagesNotVisible"] == "0"


class LagBench:
    """Runs the rising rates for each replica count and collects steps, notes and failures."""

    def __init__(self, rates: list[float], duration: float, options: ReplicatorOptions,
                 workdir: Path, log: Callable[[str], None]) -> None:
        self.rates = sorted(set(rates))
        self.duration = duration
        self.options = options
        self.workdir = workdir
        self.log = log
        self.steps: list[Step] = []
        self.notes: list[str] = []
        self.failures: list[str] = []

    def run(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        endpoints = servers.start("moto", self.workdir)
        try:
            for n in REPLICAS:
                try:
                    with self.replicas(endpoints, n) as stage:
                        self.rising(stage)
                except (DaemonFailed, OSError, BotoCoreError, ClientError) as exc:
                    self.failures.append(f"lag, {n} replica(s): {exc}")
                    self.log(f"  FAILED: {exc}")
        finally:
            servers.stop(endpoints)

    @contextlib.contextmanager
    def replicas(self, endpoints: list[Endpoint], n: int) -> Iterator[Stage]:
        """``n`` replicas on fresh buckets and a fresh queue, stopped by PID however it ends."""
        bucket = f"lag-{n}"
        rundir = self.workdir / f"{n}-replicas"
        rundir.mkdir(parents=True, exist_ok=True)
        for endpoint in endpoints:
            data.create_bucket(endpoint, bucket)
        configs = [daemons.write_config(rundir, endpoints, bucket, self.options, i)
                   for i in range(1, n + 1)]
        for line in daemons.setup_events(configs[0][0]):
            self.log(f"  setup-events: {line}")
        started: list[Replica] = []
        try:
            for i, (path, listen) in enumerate(configs, 1):
                started.append(Replica.start(i, path, listen))
            yield Stage(endpoints, bucket, started)
        finally:
            for replica in started:
                code = replica.stop()
                if code != 0:
                    self.failures.append(f"replica {replica.number} of {n} exited with code {code} "
                                         f"on SIGTERM; see {replica.log.path}")

    def rising(self, stage: Stage) -> None:
        """Raise the rate until one does not pass."""
        self.warm_up(stage)
        for rate in self.rates:
            self.log(f"lag: {len(stage.replicas)} replica(s), {rate:g} writes/s "
                     f"for {self.duration:g}s")
            step = self.step(stage, rate)
            self.steps.append(step)
            self.log(f"  p99 {step.p99:.2f}s, achieved {step.achieved:.1f}/s: {step.verdict}")
            if not step.passed:
                return

    def warm_up(self, stage: Stage) -> None:
        """Wait until the daemons run, then until a few objects arrive everywhere."""
        def started() -> bool:
            for replica in stage.replicas:
                replica.read()
            return all(r.log.started for r in stage.replicas)
        if not _until(started, START_DEADLINE):
            raise DaemonFailed(f"the replicas did not start within {START_DEADLINE:.0f}s")
        w = Workload(f"warm-up-{len(stage.replicas)}", WARM_UP, SIZE)
        for i in range(w.count):
            stage.s3.put_object(Bucket=stage.bucket, Key=w.key(i), Body=w.body(i))
        keys = [w.key(i) for i in range(w.count)]
        if not _until(lambda: stage.copied(keys), START_DEADLINE):
            raise DaemonFailed(f"the warm-up objects were not copied within {START_DEADLINE:.0f}s")

    def step(self, stage: Stage, rate: float) -> Step:
        """Write at ``rate`` for the duration, wait for every copy, and take the figures."""
        n = len(stage.replicas)
        w = Workload(f"lag{n}-{rate:g}", max(2, round(rate * self.duration)), SIZE)
        keys = [w.key(i) for i in range(w.count)]
        before, cpu = daemons.histograms(stage.replicas), Cpu.now(stage.replicas, stage.endpoints)
        writes = _write(stage.s3, stage.bucket, w, rate)
        arrived = _until(lambda: stage.copied(keys), DRAIN_DEADLINE)
        # Acknowledged messages come after the copies' lag observations: then the scrape has all.
        if arrived and not _until(stage.quiet, DRAIN_DEADLINE):
            self.notes.append(f"{n} replica(s), {rate:g}/s: messages were still in the queue "
                              f"{DRAIN_DEADLINE:.0f}s after every copy was verified")
        first = daemons.first_copies(stage.replicas, keys)
        after = daemons.histograms(stage.replicas)
        used = Cpu.now(stage.replicas, stage.endpoints).share(cpu)
        lags = {r: sorted(first[k, r] - wr.start for k, wr in zip(keys, writes, strict=True)
                          if (k, r) in first) for r in REGIONS}
        shares, duplicates, failed = daemons.tally(stage.replicas, keys)
        if arrived:
            self.verify(stage, w, writes)
        return Step(n, rate, writes, lags, len(keys) * len(REGIONS) - len(first), shares,
                    duplicates, failed,
                    {r: _delta(before[r], after[r]) for r in REGIONS}, used)

    def verify(self, stage: Stage, w: Workload, writes: list[Write]) -> None:
        """Independently of the logs: every region holds every object the writer wrote."""
        manifest = Manifest(w)
        for i, write in enumerate(writes):
            manifest.add(i, write.md5)
        for region in stage.endpoints[1:]:
            self.failures += data.verify(region, stage.bucket, manifest, sample=10,
                                         part_size=self.options.part_size, prefix=f"{w.name}/")


def _delta(before: dict[float, float],
           after: dict[float, float]) -> tuple[float, tuple[float, float] | None]:
    """Observations between two scrapes, and the bucket of their p99."""
    buckets = {bound: count - before.get(bound, 0.0) for bound, count in after.items()}
    return buckets.get(math.inf, 0.0), quantile_bucket(buckets, 0.99)


# -- the report ------------------------------------------------------------------------------------


def _table(headers: list[str], rows: list[list[str]]) -> str:
    """Figures right-aligned, the verdict (last column) left-aligned."""
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == len(cells) - 1 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()
    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}"


def table(steps: list[Step]) -> str:
    headers = ["replicas", "rate/s", "achieved/s", "objects",
               *(f"{r} p50/p99 s" for r in REGIONS), "max s", "daemon p99 s", "PUT p99 ms",
               "CPU % d/s/r/w",
               "copies by replica", "result"]
    rows = []
    for s in steps:
        daemon = max((b for _, b in s.daemon.values() if b is not None), default=None)
        puts = sorted(w.end - w.start for w in s.writes)
        rows.append([
            str(s.replicas), f"{s.rate:g}", f"{s.achieved:.1f}", f"{len(s.writes):,}",
            *(f"{percentile(v, 0.5):.2f} / {percentile(v, 0.99):.2f}" if v else "-"
              for v in s.lags.values()),
            f"{max((v[-1] for v in s.lags.values() if v), default=math.nan):.2f}",
            f"{daemon[0]:g}–{daemon[1]:g}" if daemon else "-", _ms(percentile(puts, 0.99)),
            "/".join(f"{c:.0%}".rstrip("%") for c in s.cpu),
            " + ".join(f"{c:,}" for c in s.shares), s.verdict,
        ])
    return _table(headers, rows)


def best(steps: list[Step], replicas: int, rates: list[float]) -> str:
    """The highest rate that passed (the rates stop rising at the first that does not);
    '≥' when even the highest rate tried passed."""
    passed = [s.rate for s in steps if s.replicas == replicas and s.passed]
    if not passed:
        return "none of the rates tried"
    return f"{'≥' * (max(passed) == max(rates))}{max(passed):g}/s"


def anomalies(steps: list[Step]) -> list[str]:
    """What a step did beyond one verified copy per object and region."""
    found = []
    for s in steps:
        what = f"{s.replicas} replica(s), {s.rate:g}/s"
        if s.duplicates:
            found.append(f"{what}: {s.duplicates} copies beyond the first to a region")
        if s.longest_pause > 1 + 1 / s.rate:
            found.append(f"{what}: the writer sent no PUT for {s.longest_pause:.1f}s (all "
                         f"{WRITERS} PUTs in flight were stuck, or the machine stalled)")
        if s.failed_attempts:
            found.append(f"{what}: {s.failed_attempts} copy attempts logged as failed "
                         "(and retried)")
        counts = {r: c for r, (c, _) in s.daemon.items()}
        if any(c != len(s.lags[r]) for r, c in counts.items()):
            found.append(f"{what}: the daemon's histogram counted "
                         + ", ".join(f"{r} {c:.0f}" for r, c in counts.items())
                         + f" observations for {len(s.writes):,} objects per region (a second "
                         "copy is observed again)")
    return found


def report(bench: LagBench) -> str:
    o = bench.options
    lines = [
        "replication lag in events mode (moto: S3 and SQS on the source's server), "
        f"{SIZE // KiB} KiB objects, {bench.duration:g}s per rate, rates "
        f"{' '.join(f'{r:g}' for r in bench.rates)} writes/s, {WRITERS} writer threads",
        f"replicator run ×1, then ×2 on one queue: concurrency {o.concurrency} "
        f"({max(1, o.concurrency // 10)} receivers each), feed.wait_time {WAIT_TIME}s, "
        f"sweep_interval {SWEEP_INTERVAL}s, log level INFO (--log-format json)",
        "",
        table(bench.steps) if bench.steps else "(no rate was measured)",
        "",
        METHOD,
        *(f"note: {n}" for n in [*bench.notes, *anomalies(bench.steps)]),
        "",
        f"max rate with p99 < {LIMIT:g} s: "
        + ", ".join(f"{best(bench.steps, n, bench.rates)} ({n} replica{'s' * (n > 1)})"
                    for n in REPLICAS)
        + (" (≥: the highest rate tried passed)" if any(
            "≥" in best(bench.steps, n, bench.rates) for n in REPLICAS) else ""),
    ]
    return "\n".join(lines)


METHOD = textwrap.fill(" ".join(f"""
lag: from the writer sending the PUT (its own clock, so the PUT's own time is included) to the
time of the first daemon log record reporting the object copied and verified in that region
(--log-format json: its UTC time field, milliseconds). A key's regions are copied together and
logged when the last is done, so the regions' figures are alike by construction. p50/p99:
nearest rank over every object; max: the largest lag in any region. achieved: writes / time
between the first and last PUT sent (open loop, {WRITERS} PUTs in flight at most). daemon p99
s: the bucket holding the p99 of the daemon's own replicator_replication_lag_seconds (counted
from the S3 event time) between scrapes before and after the rate, summed over the replicas,
worst region. CPU % d/s/r/w: CPU of the daemons (summed), the source's moto server (S3 and SQS;
one Python process, so about 100% is all it can use), the three regions' moto servers (summed)
and the writer (this process) from the first write until every message was acknowledged, in %
of one core (the machine's load is in the header). copies by replica: copies each replica
logged. A rate passes when the writer reached {SUSTAINED:.0%} of it, every copy arrived within
{DRAIN_DEADLINE:.0f} s of the last write and p99 < {LIMIT:g} s in every region; each region is
then listed and compared with what was written (etag = md5) and 10 objects per region are read
back. feed.wait_time {WAIT_TIME} s: moto's ReceiveMessage returns as soon as one message is
visible (it waits on a Condition that each new message notifies), so the long poll adds no lag.
The sweep runs only at start-up (interval {SWEEP_INTERVAL} s), so the events path alone is
measured.
""".split()), width=95)
