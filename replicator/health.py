"""Which endpoints answer, and why not.

Fed by every copy outcome and by a periodic probe; read by ``/readyz``,
``replicator_region_up`` and the status page. A problem is logged once when
it starts and once when it ends, never once per object.
"""

from __future__ import annotations

import logging
import time

from .metrics import Metrics
from .model import RegionResult

log = logging.getLogger(__name__)

#: Failure reasons that say nothing about whether the region is reachable.
NOT_AN_OUTAGE = frozenset({"throttled", "checksum_mismatch", "source_changed", "source_vanished"})

UNCHECKED = "unknown: not checked yet"
_FIXES = {
    "no_such_bucket": "create the bucket, or fix the bucket name in the config",
    "access_denied": "check the credentials and the IAM policy (deploy/iam/)",
    "clock_skew": "the clock is off: run NTP on this host",
    "network": "check the endpoint URL and that the endpoint is up and reachable",
}


class Health:
    """Reachability of the source and each region, with the reason when not."""

    def __init__(self, metrics: Metrics, regions: list[str]) -> None:
        self.metrics = metrics
        self.problems = {name: UNCHECKED for name in ["source", *regions]}
        self.since: dict[str, float] = {}
        for name in self.problems:
            self._gauge(name, up=False)

    def _gauge(self, name: str, *, up: bool) -> None:
        if name == "source":
            self.metrics.source_up.set(int(up))
        else:
            self.metrics.region_up.labels(name).set(int(up))

    def ok(self, name: str) -> None:
        if name in self.problems:
            was = self.problems.pop(name)
            self.since[name] = time.time()
            if was != UNCHECKED:
                log.info("%s answers again (was: %s)", name, was)
        self._gauge(name, up=True)

    def down(self, name: str, reason: str, message: str) -> None:
        problem = f"{reason}: {message}"
        if self.problems.get(name, "").split(":", 1)[0] != reason:
            fix = _FIXES.get(reason)
            log.error("%s is not usable: %s%s", name, message, f" (fix: {fix})" if fix else "")
            self.since[name] = time.time()
        self.problems[name] = problem
        self._gauge(name, up=False)

    def observe(self, result: RegionResult) -> None:
        """Learn from one copy outcome."""
        if result.done:
            self.ok(result.region)
        elif result.reason not in NOT_AN_OUTAGE:
            self.down("source" if result.at_source else result.region, result.reason or "error",
                      result.error or "")

    @property
    def ready(self) -> bool:
        return not self.problems
