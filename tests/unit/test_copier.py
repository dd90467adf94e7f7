"""The copier against in-memory stores: what it writes, what it proves, what it refuses."""

from __future__ import annotations

import os

import pytest

from replicator import errors
from replicator.copier import Copier
from replicator.model import (
    META_CHECKSUM,
    META_SOURCE_ETAG,
    META_SOURCE_MTIME,
    Change,
    Kind,
    Outcome,
    RegionResult,
)
from replicator.verifier import checksum
from testing.fakes import MemoryStore, md5_etag

from .conftest import PART, REGIONS, THRESHOLD, UploadLog, options

ALL = list(REGIONS)


def change_of(store: MemoryStore, key: str) -> Change:
    """The change a listing of ``store`` would queue for ``key``."""
    obj = store.objects[key]
    return Change(key, Kind.PUT, obj.etag, len(obj.body), obj.last_modified)


def outcomes(results: list[RegionResult]) -> dict[str, tuple[Outcome, str | None]]:
    return {r.region: (r.outcome, r.reason) for r in results}


COPIED = {r: (Outcome.COPIED, None) for r in REGIONS}


async def test_a_small_object_is_read_once_and_written_to_every_region_with_its_markers(
        copier: Copier, source: MemoryStore, regions: dict[str, MemoryStore]) -> None:
    body = b"hello, regions"
    source.seed("k", body, metadata={"owner": "ops"}, headers={"ContentType": "text/plain"},
                tags={"team": "a"}, last_modified=1000.0)
    results = await copier.apply(change_of(source, "k"), ALL)
    assert outcomes(results) == COPIED
    assert [r.nbytes for r in results] == [len(body)] * 3
    assert not any(r.unproven for r in results)
    assert (source.count("get"), source.count("get_tags")) == (1, 1)
    for region in regions.values():
        replica = region.objects["k"]
        assert (replica.body, replica.etag) == (body, md5_etag(body))
        assert replica.metadata == {"owner": "ops", META_SOURCE_ETAG: md5_etag(body),
                                    META_SOURCE_MTIME: "1000.000",
                                    META_CHECKSUM: f"sha256:{checksum(body, 'sha256')}"}
        assert replica.headers == {"ContentType": "text/plain"}
        assert replica.tags == {"team": "a"}
        assert region.count("put") == 1
    assert copier.budget.used == 0


async def test_a_region_that_holds_the_change_is_skipped_without_reading_the_source(
        copier: Copier, source: MemoryStore, regions: dict[str, MemoryStore]) -> None:
    source.seed("k", b"once")
    change = change_of(source, "k")
    assert outcomes(await copier.apply(change, ALL)) == COPIED
    assert outcomes(await copier.apply(change, ALL)) == {r: (Outcome.SKIPPED, None) for r in REGIONS}
    assert source.count("get") == 1
    assert all(region.count("put") == 1 for region in regions.values())


async def test_a_region_not_probed_costs_no_head_and_a_412_there_probes_and_replans(
        copier: Copier, source: MemoryStore, regions: dict[str, MemoryStore]) -> None:
    """A put the feed saw as new is written with If-None-Match: *; an older copy of ours
    already there answers 412, and the copy is planned again over that replica."""
    regions["r1"].seed("k", b"old copy", metadata={META_SOURCE_ETAG: "0" * 32,
                                                   META_SOURCE_MTIME: "10.000"})
    source.seed("k", b"new bytes", last_modified=20.0)
    results = await copier.apply(change_of(source, "k"), ALL, probe=set())
    assert outcomes(results) == COPIED
    assert [regions[r].count("head") for r in REGIONS] == [1, 0, 0]  # only the 412 looked
    assert [regions[r].count("put") for r in REGIONS] == [2, 1, 1]
    assert all(regions[r].body("k") == b"new bytes" for r in REGIONS)


async def test_a_newer_replica_written_during_the_copy_is_never_overwritten(
        copier: Copier, source: MemoryStore, regions: dict[str, MemoryStore]) -> None:
    source.seed("k", b"older", last_modified=100.0)
    newer = {META_SOURCE_ETAG: md5_etag(b"newer"), META_SOURCE_MTIME: "200.000"}
    # Another writer (a second replicator, say) lands the newer change first.
    regions["r2"].before("put", lambda: regions["r2"].seed("k", b"newer", metadata=newer))
    results = await copier.apply(change_of(source, "k"), ALL)
    assert outcomes(results) == {**COPIED, "r2": (Outcome.SKIPPED, None)}
    assert regions["r2"].body("k") == b"newer"
    assert regions["r2"].count("head") == 2  # the first look, and the look after the 412


async def test_replanning_gives_up_after_a_few_lost_races_and_says_why(
        copier: Copier, source: MemoryStore, regions: dict[str, MemoryStore]) -> None:
    source.seed("k", b"contended")
    regions["r3"].fail("put", errors.ReplicaChanged("412"), times=10)
    results = await copier.apply(change_of(source, "k"), ALL)
    assert outcomes(results) == {**COPIED, "r3": (Outcome.FAILED, "replica_changed")}
    assert regions["r3"].count("put") == 3  # the first write and two re-plans


async def test_a_multipart_source_is_mirrored_part_for_part_and_leaves_no_upload_open(
        copier: Copier, source: MemoryStore, regions: dict[str, MemoryStore],
        uploads: UploadLog) -> None:
    body = os.urandom(3 * PART + 50)
    etag = source.seed("big", body, parts=[PART + 20, PART, PART - 20, 50], algorithm="sha256")
    assert etag.endswith("-4")
    results = await copier.apply(change_of(source, "big"), ALL)
    assert outcomes(results) == COPIED
    assert not any(r.unproven for r in results)
    for region in regions.values():
        replica = region.objects["big"]
        assert (replica.body, replica.etag) == (body, etag)
        assert [len(p.body) for p in replica.parts or ()] == [PART + 20, PART, PART - 20, 50]
        assert region.uploads == {}
    assert uploads.recorded == 3 and uploads.open == set()
    assert source.count("get") == 4  # each part read once, whatever the number of regions
    assert copier.budget.used == 0


async def test_a_single_part_object_over_the_threshold_is_copied_in_parts_of_our_own(
        copier: Copier, source: MemoryStore, regions: dict[str, MemoryStore]) -> None:
    body = os.urandom(THRESHOLD + 1)
    etag = source.seed("k", body)
    results = await copier.apply(change_of(source, "k"), ALL)
    assert outcomes(results) == COPIED
    assert not any(r.unproven for r in results)  # the source's md5 etag proved the read
    replica = regions["r1"].objects["k"]
    assert replica.body == body and replica.etag.endswith("-2")
    assert replica.metadata[META_SOURCE_ETAG] == etag


async def test_a_corrupt_source_read_writes_nothing_anywhere(
        copier: Copier, source: MemoryStore, regions: dict[str, MemoryStore],
        uploads: UploadLog) -> None:
    source.seed("small", b"x" * 100)
    source.seed("big", os.urandom(3 * PART), parts=[PART, PART, PART])
    source.corrupt("get", times=2)
    for key in ("small", "big"):
        results = await copier.apply(change_of(source, key), ALL)
        assert outcomes(results) == {r: (Outcome.FAILED, "checksum_mismatch") for r in REGIONS}
        assert all(r.at_source for r in results)
    assert all(region.objects == {} and region.uploads == {} for region in regions.values())
    assert uploads.open == set()
    assert copier.budget.used == 0


async def test_a_write_that_lands_corrupt_is_deleted_again_and_only_that_region_fails(
        copier: Copier, source: MemoryStore, regions: dict[str, MemoryStore]) -> None:
    source.seed("k", b"fragile bytes")
    regions["r2"].corrupt("put")
    results = await copier.apply(change_of(source, "k"), ALL)
    assert outcomes(results) == {**COPIED, "r2": (Outcome.FAILED, "checksum_mismatch")}
    assert "k" not in regions["r2"].objects
    assert regions["r2"].count("delete") == 1


async def test_a_part_that_lands_corrupt_fails_that_region_and_aborts_its_upload(
        copier: Copier, source: MemoryStore, regions: dict[str, MemoryStore],
        uploads: UploadLog) -> None:
    source.seed("big", os.urandom(3 * PART), parts=[PART, PART, PART])
    regions["r1"].corrupt("upload_part")
    regions["r3"].fail("upload_part", errors.TransientError("connection reset"))
    results = await copier.apply(change_of(source, "big"), ALL)
    assert outcomes(results) == {"r1": (Outcome.FAILED, "checksum_mismatch"),
                                 "r2": (Outcome.COPIED, None),
                                 "r3": (Outcome.FAILED, "network")}
    assert "big" not in regions["r1"].objects and "big" not in regions["r3"].objects
    assert all(region.uploads == {} for region in regions.values())
    assert (regions["r1"].count("abort_upload"), regions["r3"].count("abort_upload")) == (1, 1)
    assert uploads.open == set()


async def test_a_source_overwritten_since_the_listing_fails_as_source_changed(
        copier: Copier, source: MemoryStore, regions: dict[str, MemoryStore]) -> None:
    source.seed("k", b"v1")
    planned = change_of(source, "k")
    source.seed("k", b"v2")
    results = await copier.apply(planned, ALL)
    assert outcomes(results) == {r: (Outcome.FAILED, "source_changed") for r in REGIONS}
    assert all(r.permanent and r.at_source for r in results)


async def test_an_archived_source_fails_with_its_own_reason(
        copier: Copier, source: MemoryStore) -> None:
    source.seed("cold", b"frozen", storage_class="GLACIER")
    results = await copier.apply(change_of(source, "cold"), ALL)
    assert outcomes(results) == {r: (Outcome.FAILED, "archived") for r in REGIONS}


async def test_a_missing_region_bucket_fails_that_region_only(
        copier: Copier, source: MemoryStore, regions: dict[str, MemoryStore]) -> None:
    source.seed("k", b"data")
    regions["r2"].missing = True
    results = await copier.apply(change_of(source, "k"), ALL)
    assert outcomes(results) == {**COPIED, "r2": (Outcome.FAILED, "no_such_bucket")}
    assert next(r for r in results if r.region == "r2").permanent


SIZES = {"small": (100, None), "big": (3 * PART, [PART, PART, PART])}


def encrypted_copier(source: MemoryStore, kms: MemoryStore, uploads: UploadLog,
                     algorithm: str = "sha256") -> Copier:
    return Copier(source, {"kms": kms}, options(checksum_algorithm=algorithm), {"kms": None},
                  uploads)


@pytest.mark.parametrize("algorithm", ["sha256", "crc32c", "crc64nvme", "none"])
@pytest.mark.parametrize("key", sorted(SIZES))
async def test_an_encrypted_region_is_proven_by_its_checksum_not_its_etag(
        source: MemoryStore, uploads: UploadLog, algorithm: str, key: str) -> None:
    """Its etags are no md5s: the echoed checksum proves the write; without one the copy
    is kept and flagged unproven, never deleted as corrupt."""
    kms = MemoryStore("kms", encrypted=True)
    size, parts = SIZES[key]
    source.seed(key, os.urandom(size), parts=parts)
    change = change_of(source, key)
    [copied] = await encrypted_copier(source, kms, uploads, algorithm).apply(change, ["kms"])
    assert (copied.outcome, copied.unproven) == (Outcome.COPIED, algorithm == "none")
    assert kms.objects[key].etag != change.etag and kms.body(key) == source.body(key)


async def test_a_multipart_copy_in_an_encrypted_region_is_current_next_time(
        source: MemoryStore, uploads: UploadLog) -> None:
    kms = MemoryStore("kms", encrypted=True)
    copier = encrypted_copier(source, kms, uploads)
    source.seed("big", os.urandom(3 * PART), parts=[PART, PART, PART])
    change = change_of(source, "big")
    assert [r.outcome for r in await copier.apply(change, ["kms"])] == [Outcome.COPIED]
    assert [r.outcome for r in await copier.apply(change, ["kms"])] == [Outcome.SKIPPED]


async def test_a_single_part_copy_in_an_encrypted_region_is_current_next_time(
        source: MemoryStore, uploads: UploadLog) -> None:
    kms = MemoryStore("kms", encrypted=True)
    copier = encrypted_copier(source, kms, uploads)
    source.seed("small", os.urandom(100))
    change = change_of(source, "small")
    assert [r.outcome for r in await copier.apply(change, ["kms"])] == [Outcome.COPIED]
    assert [r.outcome for r in await copier.apply(change, ["kms"])] == [Outcome.SKIPPED]


@pytest.mark.parametrize("key", sorted(SIZES))
async def test_copies_of_an_encrypted_source_are_proven_and_current_next_time(
        uploads: UploadLog, regions: dict[str, MemoryStore], key: str) -> None:
    """The source's etag is no md5: its stored checksums prove the read, and the md5
    marker written with each replica makes it current on the next look."""
    source = MemoryStore("source", encrypted=True)
    targets = {**regions, "kms": MemoryStore("kms", encrypted=True)}
    copier = Copier(source, dict(targets), options(), dict.fromkeys(targets), uploads)
    size, parts = SIZES[key]
    source.seed(key, os.urandom(size), parts=parts, algorithm="sha256")
    change = change_of(source, key)
    results = await copier.apply(change, list(targets))
    assert [(r.outcome, r.unproven) for r in results] == [(Outcome.COPIED, False)] * 4
    assert all(store.body(key) == source.body(key) for store in targets.values())
    assert [r.outcome for r in await copier.apply(change, list(targets))] == [Outcome.SKIPPED] * 4


async def test_a_delete_removes_replicas_but_never_one_newer_than_the_delete(
        copier: Copier, regions: dict[str, MemoryStore]) -> None:
    for region in regions.values():
        region.seed("gone", b"old", metadata={META_SOURCE_ETAG: "e", META_SOURCE_MTIME: "100.000"})
    regions["r3"].seed("gone", b"rewritten", metadata={META_SOURCE_ETAG: "f",
                                                       META_SOURCE_MTIME: "300.000"})
    del regions["r2"].objects["gone"]  # already absent: deleting it is still done
    results = await copier.apply(Change("gone", Kind.DELETE, last_modified=200.0), ALL)
    assert outcomes(results) == {"r1": (Outcome.DELETED, None), "r2": (Outcome.DELETED, None),
                                 "r3": (Outcome.SKIPPED, None)}
    assert "gone" not in regions["r1"].objects and regions["r3"].body("gone") == b"rewritten"


async def test_a_delete_of_a_key_back_at_the_source_is_superseded(
        copier: Copier, source: MemoryStore, regions: dict[str, MemoryStore]) -> None:
    source.seed("back", b"recreated")
    regions["r1"].seed("back", b"old")
    results = await copier.apply(Change("back", Kind.DELETE, last_modified=200.0), ALL)
    assert outcomes(results) == {r: (Outcome.SUPERSEDED, "source_changed") for r in REGIONS}
    assert regions["r1"].count("delete") == 0
