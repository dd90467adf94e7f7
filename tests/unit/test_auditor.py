"""The audit: the k-way merge of the source and region listings, each key's state per region,
the repairs it queues and the deletes it holds (on the real journal, a temp SQLite file)."""

from __future__ import annotations

import os

import pytest
from prometheus_client import CollectorRegistry

from replicator import errors
from replicator.auditor import Auditor, RegionAudit
from replicator.config import Deletes
from replicator.journal import Journal
from replicator.metrics import Metrics
from replicator.model import META_CHECKSUM, META_SOURCE_ETAG, Kind, Listed
from replicator.verifier import checksum
from testing.fakes import MemoryStore, md5_etag

from .conftest import REGIONS, options

ALL = list(REGIONS)


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def auditor(source: MemoryStore, regions: dict[str, MemoryStore], journal: Journal,
            registry: CollectorRegistry, **replication: object) -> Auditor:
    return Auditor(source, dict(regions), journal.listing, journal.work, options(**replication),
                   Metrics(registry, list(regions)), Deletes())


def counts(audit: RegionAudit) -> dict[str, int]:
    """The states that were found, leaving out the zeros."""
    return {state: n for state, n in audit.counts.items() if n}


async def queued(journal: Journal) -> set[tuple[str, str, Kind]]:
    return {(p.change.key, p.region, p.change.kind)
            for p in await journal.work.due(float("inf"), 1000, set(ALL), set())}


def mirror(source: MemoryStore, *regions: MemoryStore) -> None:
    """Give each region an exact copy of every source object."""
    for key, obj in source.objects.items():
        for region in regions:
            region.seed(key, obj.body, metadata={META_SOURCE_ETAG: obj.etag})


async def test_every_key_is_sorted_per_region_into_ok_missing_mismatched_and_extra(
        source: MemoryStore, regions: dict[str, MemoryStore], journal: Journal,
        registry: CollectorRegistry) -> None:
    for key in ("a", "b", "c", "d"):
        source.seed(key, f"body of {key}".encode())
    mirror(source, *regions.values())
    r2 = regions["r2"]
    del r2.objects["b"]
    r2.seed("c", b"BODY OF c")  # same size, other bytes
    r2.seed("d", b"body of d, longer")
    r2.seed("zz", b"not at the source")
    results = await auditor(source, regions, journal, registry).audit()
    assert counts(results["r1"]) == counts(results["r3"]) == {"ok": 4}
    assert counts(results["r2"]) == {"ok": 1, "missing": 1, "mismatched": 2, "extra": 1}
    assert results["r2"].samples == {"ok": [], "missing": ["b"], "mismatched": ["c", "d"],
                                     "extra": ["zz"], "archived": []}
    assert (results["r1"].consistent, results["r2"].consistent) == (True, False)
    assert (results["r1"].ratio, results["r2"].ratio) == (1.0, 0.25)
    sample = registry.get_sample_value
    assert sample("replicator_consistency_ratio", {"region": "r2"}) == 0.25
    assert sample("replicator_audit_objects", {"region": "r2", "state": "mismatched"}) == 2
    assert await queued(journal) == set()  # no repair asked for


async def test_repair_queues_the_missing_and_mismatched_and_holds_the_extra_behind_the_guard(
        source: MemoryStore, regions: dict[str, MemoryStore], journal: Journal,
        registry: CollectorRegistry) -> None:
    source.seed("a", b"alpha")
    source.seed("b", b"beta")
    mirror(source, regions["r1"], regions["r3"])
    regions["r3"].seed("b", b"BETA")
    regions["r1"].seed("extra", b"left behind")
    await auditor(source, regions, journal, registry).audit(repair=True)
    assert await queued(journal) == {("a", "r2", Kind.PUT), ("b", "r2", Kind.PUT),
                                     ("b", "r3", Kind.PUT)}
    # The journal has never listed the source: a delete then is far likelier a broken
    # listing than a real one, so the guard holds it for an operator.
    assert await journal.listing.held_deletes() == 1


async def test_extra_replicas_within_the_guard_are_queued_as_deletes(
        source: MemoryStore, regions: dict[str, MemoryStore], journal: Journal,
        registry: CollectorRegistry) -> None:
    listed = [Listed(f"k{i}", md5_etag(b"x"), 1, 1.0) for i in range(20)]
    await journal.listing.begin_listing()
    await journal.listing.stage(listed)
    await journal.listing.commit_listing(ALL, lambda key: True, True, lambda *counts: True)
    for entry in listed:
        source.seed(entry.key, b"x")
    mirror(source, *regions.values())
    regions["r2"].seed("orphan", b"deleted at the source behind the feed's back")
    for p in await journal.work.due(float("inf"), 1000, set(ALL), set()):
        await journal.work.finish(p)  # the listing's puts are done: the regions hold them
    await auditor(source, regions, journal, registry).audit(repair=True)
    assert await queued(journal) == {("orphan", r, Kind.DELETE) for r in REGIONS}
    assert await journal.listing.held_deletes() == 0


async def test_replicas_whose_etag_differs_by_design_are_ok_when_their_marker_and_bytes_prove_it(
        source: MemoryStore, regions: dict[str, MemoryStore], journal: Journal,
        registry: CollectorRegistry) -> None:
    body = os.urandom(300)
    etag = source.seed("k", body)
    sent = f"sha256:{checksum(body, 'sha256')}"
    regions["r1"].seed("k", body, parts=[100, 100, 100],  # copied in parts of our own
                       metadata={META_SOURCE_ETAG: etag})
    kms = MemoryStore("r2", encrypted=True)  # an SSE-KMS region: no md5 etags
    kms.seed("k", body, algorithm="sha256", metadata={META_SOURCE_ETAG: etag, META_CHECKSUM: sent,
                                                      "replicator-md5": md5_etag(body)})
    regions["r2"] = kms
    regions["r3"].seed("k", body, parts=[150, 150], metadata={META_SOURCE_ETAG: "other"})
    results = await auditor(source, regions, journal, registry).audit()
    assert {name: counts(r) for name, r in results.items()} == {
        "r1": {"ok": 1}, "r2": {"ok": 1}, "r3": {"mismatched": 1}}


async def test_a_region_whose_listing_fails_is_reported_and_the_others_are_audited(
        source: MemoryStore, regions: dict[str, MemoryStore], journal: Journal,
        registry: CollectorRegistry) -> None:
    source.seed("a", b"alpha")
    mirror(source, *regions.values())
    regions["r3"].fail("listing", errors.TransientError("r3 ListObjectsV2: connection refused"))
    results = await auditor(source, regions, journal, registry).audit(repair=True)
    assert results["r3"].error == "r3 ListObjectsV2: connection refused"
    assert not results["r3"].consistent and counts(results["r3"]) == {}
    assert counts(results["r1"]) == {"ok": 1} and results["r1"].consistent
    assert registry.get_sample_value("replicator_last_audit_timestamp_seconds",
                                     {"region": "r3"}) == 0
    assert await queued(journal) == set()  # an unreadable region is not a missing one


async def test_a_source_listing_that_fails_stops_the_audit(
        source: MemoryStore, regions: dict[str, MemoryStore], journal: Journal,
        registry: CollectorRegistry) -> None:
    source.fail("listing", errors.TransientError("source ListObjectsV2: 503"))
    regions["r1"].seed("a", b"alpha")
    with pytest.raises(errors.ReplicatorError, match="the source listing failed"):
        await auditor(source, regions, journal, registry).audit(repair=True)
    assert await queued(journal) == set() and await journal.listing.held_deletes() == 0


async def test_an_archived_source_is_counted_apart_and_never_queued(
        source: MemoryStore, regions: dict[str, MemoryStore], journal: Journal,
        registry: CollectorRegistry) -> None:
    source.seed("cold", b"frozen", storage_class="DEEP_ARCHIVE")
    results = await auditor(source, regions, journal, registry).audit(repair=True)
    assert all(counts(r) == {"archived": 1} for r in results.values())
    assert await queued(journal) == set()


async def test_keys_out_of_scope_are_not_audited_and_extras_are_allowed_without_deletes(
        source: MemoryStore, regions: dict[str, MemoryStore], journal: Journal,
        registry: CollectorRegistry) -> None:
    source.seed("logs/a", b"1")
    source.seed("tmp/b", b"2")
    mirror(source, *regions.values())
    del regions["r1"].objects["tmp/b"]
    regions["r1"].seed("logs/old", b"kept: deletes are not replicated")
    results = await auditor(source, regions, journal, registry, exclude_prefixes=["tmp/"],
                            replicate_deletes=False).audit(repair=True)
    assert counts(results["r1"]) == {"ok": 1, "extra": 1}
    assert results["r1"].consistent
    assert await queued(journal) == set() and await journal.listing.held_deletes() == 0


async def test_a_prefix_audits_only_the_keys_under_it(
        source: MemoryStore, regions: dict[str, MemoryStore], journal: Journal,
        registry: CollectorRegistry) -> None:
    for key in ("img/1", "img/2", "logs/1"):
        source.seed(key, key.encode())
    results = await auditor(source, regions, journal, registry).audit("img/")
    assert all(counts(r) == {"missing": 2} for r in results.values())
    assert ("listing", "img/") in regions["r1"].calls
