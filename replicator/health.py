"""Which endpoints answer, and a circuit breaker per region.

Fed by every copy outcome and by a periodic probe; read by the scheduler
(a region whose breaker is open gets no work: its rows wait in the journal),
``/readyz``, ``replicator_region_up`` and the status page. A problem is logged
once when it starts and once when it ends, never once per object.
"""

from __future__ import annotations

import logging
import time

from .metrics import Metrics
from .model import RegionResult

log = logging.getLogger(__name__)

#: Failure reasons that say nothing about whether the region is reachable.
NOT_AN_OUTAGE = frozenset({"throttled", "checksum_mismatch", "source_changed", "source_vanished",
                           "archived", "replica_changed", "upload_lost"})
#: Reasons that take a region out at once: no number of retries will fix them.
IMMEDIATE = frozenset({"no_such_bucket", "access_denied", "clock_skew"})
UNCHECKED = "unknown: not checked yet"

_FIXES = {
    "no_such_bucket": "create the bucket, or fix the bucket name in the config",
    "access_denied": "check the credentials (expired? wrong profile?) and the IAM policy",
    "clock_skew": "this host's clock is off: run NTP",
    "network": "check the endpoint URL and that the endpoint is up and reachable",
}


class Health:
    """Reachability of the source and each region; an open breaker is a key in ``problems``."""

    def __init__(self, metrics: Metrics, regions: list[str], *, failures: int = 5) -> None:
        self.metrics = metrics
        self.threshold = failures
        self.problems = {name: UNCHECKED for name in ["source", *regions]}
        self.since: dict[str, float] = {}
        self._streak: dict[str, int] = {}
        for name in self.problems:
            self._gauge(name, up=False)

    def add(self, region: str) -> None:
        self.problems[region] = UNCHECKED
        self._gauge(region, up=False)

    def _gauge(self, name: str, *, up: bool) -> None:
        if name == "source":
            self.metrics.source_up.set(int(up))
        else:
            self.metrics.region_up.labels(name).set(int(up))

    def allowed(self, regions: list[str]) -> set[str]:
        """Regions whose breaker is closed: the only ones that get work."""
        return {r for r in regions if r not in self.problems}

    def ok(self, name: str) -> bool:
        """Record a success; True when this closes a breaker a failure had opened."""
        self._streak[name] = 0
        self._gauge(name, up=True)
        if name not in self.problems:
            return False
        was = self.problems.pop(name)
        self.since[name] = time.time()
        if was == UNCHECKED:
            return False  # first contact: nothing was held back, nothing to make due again
        log.info("%s answers again (was: %s); its waiting work resumes", name, was)
        return True

    def down(self, name: str, reason: str, message: str) -> None:
        """Open the breaker (or keep it open), logging only a new cause."""
        if self.problems.get(name, "").split(":", 1)[0] != reason:
            fix = _FIXES.get(reason)
            log.error("%s is out of service: %s%s; its work waits in the journal", name, message,
                      f" (fix: {fix})" if fix else "")
            self.since[name] = time.time()
        self.problems[name] = f"{reason}: {message}"
        self._gauge(name, up=False)

    def observe(self, result: RegionResult) -> bool:
        """Learn from one copy outcome; True when it brought a region back."""
        if result.done:
            return self.ok(result.region)
        if result.reason in NOT_AN_OUTAGE:
            return False
        name = "source" if result.at_source else result.region
        self._streak[name] = self._streak.get(name, 0) + 1
        if result.reason in IMMEDIATE or self._streak[name] >= self.threshold:
            self.down(name, result.reason or "error", result.error or "")
        return False
