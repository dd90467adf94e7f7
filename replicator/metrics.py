"""Every Prometheus metric the service exposes, on a registry passed in.

Gauges that describe the backlog are recomputed from the journal (the only
source of truth about pending work), so they survive restarts and never drift.
Counters count events once: a copy skipped because the region already had it
(say, after a restart) is not a second replication.

The exposition passes ``promtool check metrics`` and carries no ``_created``
series (tests/unit/test_metrics.py, and tests/system/test_prometheus.py on a live
scrape).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.metrics_core import Metric

from .version import VERSION

LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
#: ``archived``: the source is in GLACIER or DEEP_ARCHIVE and the replica is missing: it
#: cannot be copied until the object is restored (then `replicator retry`).
AUDIT_STATES = ("ok", "missing", "mismatched", "extra", "archived")
#: Failure reasons whose counters exist from start-up, so rate() sees the first one.
REASONS = ("network", "throttled", "access_denied", "no_such_bucket", "checksum_mismatch",
           "source_vanished", "source_changed", "archived", "replica_changed")


class _WithoutCreated:
    """The families of one registry as a single collector, minus their ``_created`` samples.

    prometheus_client gives every counter and histogram child a ``…_created`` series (when
    the child was made): about a third more series per scrape, read by no rule or panel
    (``process_start_time_seconds`` already dates a restart). Its own switch,
    ``disable_created_metrics()``, is process-wide and would change every other registry in
    the process too (a test's, an embedding program's); dropping the samples here touches ours
    alone.
    """

    _HAS_CREATED = frozenset({"counter", "histogram", "summary"})

    def __init__(self, families: CollectorRegistry) -> None:
        self._families = families

    def describe(self) -> list[Metric]:
        """The family names, so the outer registry still refuses a duplicate."""
        return list(self._families.collect())

    def collect(self) -> Iterator[Metric]:
        for family in self._families.collect():
            if family.type in self._HAS_CREATED:
                created = f"{family.name}_created"
                family.samples = [s for s in family.samples if s.name != created]
            yield family  # a fresh Metric on every collect(): ours to trim


class Metrics:
    """The ``replicator_*`` families, labelled by region where it applies."""

    def __init__(self, registry: CollectorRegistry, regions: list[str]) -> None:
        self.registry = registry
        ProcessCollector(registry=registry)  # process_start_time_seconds, memory, CPU
        families = CollectorRegistry()  # every replicator_* family, collected through the filter

        def gauge(name: str, text: str, labels: tuple[str, ...] = ("region",)) -> Gauge:
            return Gauge(f"replicator_{name}", text, labels, registry=families)

        def counter(name: str, text: str, labels: tuple[str, ...] = ("region",)) -> Counter:
            return Counter(f"replicator_{name}", text, labels, registry=families)

        self.lag = Histogram(
            "replicator_replication_lag_seconds",
            "Seconds from the source write (or first sighting, for a backfill) until the "
            "replica was verified.", ["region"], buckets=LAG_BUCKETS, registry=families)
        self.oldest_pending_age = gauge(
            "oldest_pending_age_seconds",
            "Age of the oldest change not yet verified in the region; 0 when caught up.")
        self.backlog_objects = gauge("backlog_objects", "Changes waiting to be replicated.")
        self.backlog_bytes = gauge("backlog_bytes", "Bytes of the changes waiting to be replicated.")
        self.failed_objects = gauge(
            "failed_objects", "Changes marked failed (out of retries or a permanent error); "
                              "still retried on a slower schedule.")
        self.objects = counter("objects_replicated",
                               "Objects written or deleted in the region and verified.",
                               ("region", "operation"))
        self.bytes = counter("bytes_replicated", "Bytes written to the region and verified.",
                             ("region", "operation"))
        self.failures = counter("failures", "Failed attempts to replicate a change, by reason.",
                                ("region", "reason"))
        self.retries = counter("retries", "Requests retried after a transient error or throttling.")
        self.mismatches = counter("checksum_mismatches",
                                  "Copies rejected because a checksum did not match.")
        self.unproven = counter(
            "unproven_copies", "Copies written whose bytes could not be proven: the source offers "
            "no digest of them (an encrypted object without checksums) or an encrypted region "
            "echoed no checksum. Copied and flagged, never counted as verified silently.")
        self.region_up = gauge("region_up", "1 when the region answers, 0 when it does not.")
        self.concurrency = gauge("region_concurrency",
                                 "Copies the region may take at once now; falls under throttling.")
        self.source_up = Gauge("replicator_source_up", "1 when the last source listing succeeded.",
                               registry=families)
        self.consistency = gauge("consistency_ratio",
                                 "Source objects held identically in the region / source objects, "
                                 "at the last audit (1 for an empty source).")
        self.audit_objects = gauge("audit_objects", "Objects by state at the last audit.",
                                   ("region", "state"))
        self.last_audit = gauge("last_audit_timestamp_seconds",
                                "Unix time of the last completed audit of the region.")
        # Not ``…_replica_count``: a name ending in ``_count`` reads as a histogram's, and
        # ``promtool check metrics`` rejects it.
        self.replica_count = Gauge(
            "replicator_objects_by_replicas",
            "Source objects verified in exactly this many regions.", ["replicas"], registry=families)
        self.lag_slo = Gauge("replicator_lag_slo_seconds",
                             "Configured lag objective: oldest pending age above it should page.",
                             registry=families)
        self.deletes_held = Gauge(
            "replicator_deletes_held", "Deletes held back by the delete guard, waiting for "
            "`replicator approve-deletes` or a config change.", registry=families)
        self.malformed_events = Counter(
            "replicator_malformed_events", "Event messages that were not S3 events, moved aside.",
            registry=families)
        self.audit_interval = Gauge("replicator_audit_interval_seconds",
                                    "Configured seconds between audits.", registry=families)
        Gauge("replicator_build_info", "The running build: always 1, its version in the label.",
              ["version"], registry=families).labels(VERSION).set(1)
        registry.register(_WithoutCreated(families))
        for region in regions:
            self.add_region(region)

    def add_region(self, region: str) -> None:
        """Create every per-region series at zero, so dashboards see the region at once."""
        self.lag.labels(region)
        for family in (self.oldest_pending_age, self.backlog_objects, self.backlog_bytes,
                       self.failed_objects, self.retries, self.mismatches, self.unproven,
                       self.region_up,
                       self.concurrency):
            family.labels(region)
        for operation in ("put", "delete"):
            self.objects.labels(region, operation)
            self.bytes.labels(region, operation)
        for state in AUDIT_STATES:
            self.audit_objects.labels(region, state)
        for reason in REASONS:
            self.failures.labels(region, reason)
        self.consistency.labels(region)
        self.last_audit.labels(region)
