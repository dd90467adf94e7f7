"""Where AWS S3 is stricter than moto, end to end against the AWS-faithful endpoint.

Each test here failed on the copier that only met plain moto: a multipart source was read
as one part, an SSE-KMS etag was taken for an md5, an archived source was retried forever,
an older write could land on a newer replica.
"""

from __future__ import annotations

import base64
import hashlib
import os
from typing import Any

import pytest

from replicator import plan
from replicator.config import Config
from replicator.model import META_SOURCE_ETAG, META_SOURCE_MTIME, Change, Kind, Outcome
from replicator.service import Service
from testing.faultproxy import FaultProxy

from ..conftest import PART, REGIONS, World

pytestmark = pytest.mark.backends("faithful")

MiB = 2**20
KMS = {"ServerSideEncryption": "aws:kms"}


def put_multipart(world: World, key: str, parts: list[bytes], **kwargs: Any) -> str:
    src, bucket = world.source, world.buckets["source"]
    upload = src.create_multipart_upload(Bucket=bucket, Key=key, **kwargs)["UploadId"]
    etags = [src.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=n, Body=body)["ETag"]
             for n, body in enumerate(parts, 1)]
    return str(src.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]},
    )["ETag"]).strip('"')


def kms_by_default(world: World, name: str) -> None:
    world.clients[name].put_bucket_encryption(
        Bucket=world.buckets[name], ServerSideEncryptionConfiguration={"Rules": [
            {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}}]})


async def sync_once(config: Config) -> Service:
    async with Service(config) as service:
        assert await service.sync(), await service.journal.report.failures()
    return service


@pytest.mark.backends()
async def test_a_multipart_source_with_parts_of_different_sizes_is_mirrored(world: World) -> None:
    """Legal in S3 (only the last part may be small): the replica gets the same parts, so
    the same etag (rclone serve s3 gives every object the md5 of its file, parts or not)."""
    parts = [os.urandom(400), os.urandom(700), os.urandom(300), os.urandom(5)]
    put_multipart(world, "uneven", parts)
    source_etag = world.source.head_object(Bucket=world.buckets["source"], Key="uneven")["ETag"]
    await sync_once(world.config())
    assert world.converged()
    for region in REGIONS:
        assert world.clients[region].head_object(
            Bucket=world.buckets[region], Key="uneven")["ETag"] == source_etag
    assert world.open_uploads() == {r: [] for r in REGIONS}


async def test_a_kms_region_keeps_its_replicas_and_is_not_recopied(world: World) -> None:
    """A KMS region's etags are no md5: the writes are proven by their checksums, never
    deleted as "corrupted on transfer", and the audit and a probe find them current."""
    kms_by_default(world, "r1")
    for i in range(3):
        world.put(f"k{i}", os.urandom(100 + i * 2 * PART))
    await sync_once(world.config())
    assert world.converged()
    async with Service(world.config()) as service:
        report = await service.auditor.audit(repair=True)
        assert report["r1"].counts["ok"] == 3 and report["r1"].consistent, report["r1"].counts
        probed = await service.copier.apply(change_of(world, "k0"), ["r1"])
    assert [r.outcome for r in probed] == [Outcome.SKIPPED]


def change_of(world: World, key: str) -> Change:
    head = world.source.head_object(Bucket=world.buckets["source"], Key=key)
    return Change(key, Kind.PUT, head["ETag"].strip('"'), head["ContentLength"],
                  head["LastModified"].timestamp())


async def test_sse_settings_per_region_and_an_sse_c_source(world: World) -> None:
    key = os.urandom(32)
    sse_c = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key}
    world.put("secret", os.urandom(500), **sse_c)
    put_multipart(world, "secret-mp", [os.urandom(300), os.urandom(300), os.urandom(10)], **sse_c)
    raw = world.raw_config()
    raw["source"]["sse_customer_key"] = base64.b64encode(key).decode()
    raw["regions"][0]["sse"] = "aws:kms"
    raw["regions"][1]["sse"] = "AES256"
    await sync_once(Config.parse(raw))
    r1, r2 = world.clients["r1"], world.clients["r2"]
    assert r1.head_object(Bucket=world.buckets["r1"], Key="secret")["ServerSideEncryption"] == "aws:kms"
    assert r2.head_object(Bucket=world.buckets["r2"], Key="secret")["ServerSideEncryption"] == "AES256"
    body = world.source.get_object(Bucket=world.buckets["source"], Key="secret", **sse_c)["Body"].read()
    for region in REGIONS:
        got = world.clients[region].get_object(Bucket=world.buckets[region], Key="secret")
        assert hashlib.md5(got["Body"].read()).hexdigest() == hashlib.md5(body).hexdigest()


async def test_a_kms_multipart_source_without_checksums_is_copied_and_flagged_unproven(
        world: World) -> None:
    """Neither its etag nor a stored checksum can prove the bytes read: copied, counted, logged."""
    put_multipart(world, "opaque", [os.urandom(300), os.urandom(300), os.urandom(9)], **KMS)
    async with Service(world.config()) as service:
        assert await service.sync()
        assert {r: service.scheduler.tally[r]["unproven"] for r in REGIONS} == dict.fromkeys(REGIONS, 1)
        assert service.metrics.unproven.labels("r1")._value.get() == 1
    assert world.converged()


async def test_an_archived_source_is_parked_with_its_reason_not_retried(world: World) -> None:
    world.put("cold", b"frozen", StorageClass="GLACIER")
    world.put("warm", b"fine")
    async with Service(world.config()) as service:
        assert not await service.sync()
        failures = await service.journal.report.failures()
        assert {(f.change.key, f.reason) for f in failures} == {("cold", "archived")}
        assert all(f.next_try == float("inf") for f in failures)
        report = await service.auditor.audit()
        assert report["r1"].counts["archived"] == 1 and report["r1"].counts["ok"] == 1
    assert world.objects("r1") == {"warm": hashlib.md5(b"fine").hexdigest()}


@pytest.mark.parametrize("size", [100, 3 * PART])
async def test_an_older_write_never_lands_on_a_newer_replica(world: World, size: int) -> None:
    """The copier planned a region as empty, but another writer put a newer replica there
    first: the conditional write is refused (412), the copy re-planned, and skipped."""
    etag = world.put("k", os.urandom(size))
    head = world.source.head_object(Bucket=world.buckets["source"], Key="k")
    newer = {META_SOURCE_ETAG: "newer", META_SOURCE_MTIME: f"{head['LastModified'].timestamp() + 60:.3f}"}
    world.clients["r1"].put_object(Bucket=world.buckets["r1"], Key="k", Body=b"newer", Metadata=newer)
    change = Change("k", Kind.PUT, etag, size, head["LastModified"].timestamp())
    async with Service(world.config()) as service:
        results = await service.copier.apply(change, list(REGIONS), probe=set())
    assert {r.region: r.outcome for r in results} == {
        "r1": Outcome.SKIPPED, "r2": Outcome.COPIED, "r3": Outcome.COPIED}
    assert world.clients["r1"].get_object(Bucket=world.buckets["r1"], Key="k")["Body"].read() == b"newer"
    assert world.open_uploads()["r1"] == []


@pytest.mark.parametrize("algorithm", ["crc32c", "crc64nvme", "none"])
async def test_every_checksum_algorithm_replicates(world: World, algorithm: str) -> None:
    world.put("small", os.urandom(100))
    world.put("large", os.urandom(3 * PART + 7))
    await sync_once(world.config(replication__checksum_algorithm=algorithm))
    assert world.converged()


@pytest.mark.backends("moto", "faithful")
async def test_parts_too_large_to_mirror_are_cut_and_a_corrupt_read_is_still_caught(
        world: World, proxies: dict[str, FaultProxy], monkeypatch: pytest.MonkeyPatch) -> None:
    """Cut into parts of our own, the read is still proven part by part against the source's
    composite etag: a flipped bit is a failed attempt, never a replica pinned as current."""
    monkeypatch.setattr(plan, "MAX_MIRRORED_PART", 1000)
    source_etag = put_multipart(world, "big-parts", [os.urandom(1200), os.urandom(1300), os.urandom(40)])
    proxies["source"].flip_response_body(count=1, methods={"GET"}, path_contains="/big-parts")
    async with Service(world.config()) as service:
        assert await service.sync(), await service.journal.report.failures()
        tallies = {r: dict(service.scheduler.tally[r]) for r in REGIONS}
        report = await service.auditor.audit()
    assert all(t["failed"] == 1 and t["copied"] == 1 and not t.get("unproven")
               for t in tallies.values()), tallies
    assert world.converged()
    replica = world.clients["r1"].head_object(Bucket=world.buckets["r1"], Key="big-parts")
    assert replica["ETag"].strip('"').endswith("-9") and source_etag.endswith("-3")
    assert all(report[r].counts["ok"] == 1 and report[r].consistent for r in REGIONS)
