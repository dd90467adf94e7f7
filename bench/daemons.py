"""The `replicator run` daemons of the lag benchmark: configured for the events feed, started,
read through their logs and /metrics, and stopped by PID.

The daemons log with ``--log-format json``, one record per line. A daemon's per-copy
record (fields ``op``, ``key``, ``region``, ``outcome``; ``time`` in UTC to the
millisecond) is written once the copy is verified; those records are what the benchmark
times copies by, independently of the daemon's own lag metric.
"""

from __future__ import annotations

import collections
import math
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from testing.copylog import CopyLog

from . import tools
from .servers import REGIONS, Endpoint, stop_process
from .tools import Bucket, ReplicatorOptions

#: moto 5.2.5's ReceiveMessage does not wait for ten messages: it returns as soon as one
#: is visible, waking on a Condition that every new message notifies (moto/sqs/models.py,
#: receive_message and Queue.wait_for_messages). So a long poll adds no lag here, and the
#: benchmark runs the production setting: the config default, SQS's maximum.
WAIT_TIME = 20
#: A sweep would also find the new objects: a long interval measures the events path alone.
SWEEP_INTERVAL = 3600
DONE = frozenset({"copied", "skipped"})  # skipped: the region already held it (another replica)


class DaemonFailed(RuntimeError):
    """A replica exited, or never came up: the figures of its run mean nothing."""


@dataclass
class Replica:
    """One `replicator run` process, its HTTP address and its log."""

    number: int
    listen: str
    process: subprocess.Popen[bytes]
    log: CopyLog

    @classmethod
    def start(cls, number: int, config: Path, listen: str) -> Replica:
        log = config.with_suffix(".log")
        with log.open("ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "replicator", "run", "-c", str(config),
                 "--log-format", "json"],
                cwd=tools.ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        return cls(number, listen, process, CopyLog(log))

    def read(self) -> None:
        """Take in new log records; a replica that exited fails the run."""
        self.log.read()
        if self.process.poll() is not None:
            raise DaemonFailed(f"replica {self.number} exited with code {self.process.returncode}; "
                               f"see {self.log.path}")

    def lag_buckets(self) -> dict[str, dict[float, float]]:
        """The daemon's lag histogram: cumulative counts by region and upper bound."""
        with urllib.request.urlopen(f"http://{self.listen}/metrics", timeout=10) as resp:
            text = resp.read().decode()
        found: dict[str, dict[float, float]] = collections.defaultdict(dict)
        for family in text_string_to_metric_families(text):
            if family.name == "replicator_replication_lag_seconds":
                for s in family.samples:
                    if s.name.endswith("_bucket"):
                        found[s.labels["region"]][float(s.labels["le"])] = s.value
        return found

    def stop(self, timeout: float = 30) -> int:
        return stop_process(self.process, timeout)


def write_config(rundir: Path, endpoints: list[Endpoint], bucket: str,
                 options: ReplicatorOptions, number: int) -> tuple[Path, str]:
    """Replica ``number``'s config file (its own journal and port) and its HTTP address."""
    raw = tools.replicator_config(Bucket(endpoints[0].url, bucket),
                                  [Bucket(e.url, bucket) for e in endpoints[1:]], options,
                                  rundir / f"journal-{number}.db")
    raw["feed"] = {"kind": "events", "queue": bucket, "wait_time": WAIT_TIME,
                   "sweep_interval": SWEEP_INTERVAL}
    raw["shutdown_grace"] = 5
    path = rundir / f"replica-{number}.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    return path, raw["http"]["listen"]


def setup_events(config: Path) -> list[str]:
    """`replicator setup-events`: the queue and notifications, before the first write."""
    proc = subprocess.run([sys.executable, "-m", "replicator", "setup-events", "-c", str(config)],
                          cwd=tools.ROOT, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise DaemonFailed(f"replicator setup-events exited {proc.returncode}: "
                           f"{proc.stderr.strip()[-1000:]}")
    return proc.stdout.splitlines()


def first_copies(replicas: list[Replica], keys: list[str]) -> dict[tuple[str, str], float]:
    """When each (key, region) was first verified by any replica."""
    first: dict[tuple[str, str], float] = {}
    for replica in replicas:
        replica.read()
        for key in keys:
            for region in REGIONS:
                done = [t for t, outcome in replica.log.copies.get((key, region), ())
                        if outcome in DONE]
                if done and min(done) < first.get((key, region), math.inf):
                    first[key, region] = min(done)
    return first


def histograms(replicas: list[Replica]) -> dict[str, dict[float, float]]:
    """The replicas' lag histograms added up, by region."""
    total: dict[str, dict[float, float]] = {r: {} for r in REGIONS}
    for replica in replicas:
        for region, buckets in replica.lag_buckets().items():
            for bound, count in buckets.items():
                total[region][bound] = total[region].get(bound, 0.0) + count
    return total


def tally(replicas: list[Replica], keys: list[str]) -> tuple[list[int], int, int]:
    """Copies logged by each replica, copies beyond the first per (key, region), failed attempts."""
    outcomes = [[(k, r, outcome) for k in keys for r in REGIONS
                 for _, outcome in replica.log.copies.get((k, r), ())] for replica in replicas]
    copies = [[(k, r) for k, r, outcome in lines if outcome == "copied"] for lines in outcomes]
    every = [pair for share in copies for pair in share]
    failed = sum(outcome == "failed" for lines in outcomes for _, _, outcome in lines)
    return [len(share) for share in copies], len(every) - len(set(every)), failed
