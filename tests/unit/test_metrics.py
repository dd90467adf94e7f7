"""The metric families: names Prometheus's lint accepts, no ``_created`` series, build info.

The same checks on a live scrape, through ``promtool check metrics``, are in
tests/system/test_prometheus.py."""

from __future__ import annotations

import importlib.metadata

from prometheus_client import CollectorRegistry, Counter, generate_latest

from replicator.metrics import Metrics


def metrics(registry: CollectorRegistry) -> Metrics:
    found = Metrics(registry, ["r1", "r2"])
    found.objects.labels("r1", "put").inc()
    found.lag.labels("r1").observe(0.3)
    found.replica_count.labels("2").set(5)
    return found


def test_build_info_carries_the_installed_version() -> None:
    registry = CollectorRegistry()
    metrics(registry)
    version = importlib.metadata.version("replicator")
    assert registry.get_sample_value("replicator_build_info", {"version": version}) == 1


def test_no_created_series_yet_other_registries_keep_theirs() -> None:
    registry = CollectorRegistry()
    metrics(registry)
    scrape = generate_latest(registry).decode()
    assert "_created" not in scrape
    assert "replicator_objects_replicated_total{" in scrape  # the samples themselves stay
    assert "replicator_replication_lag_seconds_count{" in scrape
    # prometheus_client's switch is process-wide; ours must not reach beyond our registry.
    other = CollectorRegistry()
    Counter("someone_elses", "A counter on another registry.", registry=other).inc()
    assert "someone_elses_created" in generate_latest(other).decode()


def test_only_histograms_end_in_a_histogram_suffix() -> None:
    """``promtool check metrics`` rejects a gauge or counter named ``…_count``, ``…_sum``, ``…_bucket``."""
    registry = CollectorRegistry()
    metrics(registry)
    for family in registry.collect():
        if family.type not in ("histogram", "summary"):
            assert not family.name.endswith(("_count", "_sum", "_bucket")), family.name


def test_the_replica_count_family_is_objects_by_replicas() -> None:
    registry = CollectorRegistry()
    metrics(registry)
    assert registry.get_sample_value("replicator_objects_by_replicas", {"replicas": "2"}) == 5
