"""End to end against each S3 backend: what arrives in the regions is what the source holds."""

from __future__ import annotations

import asyncio
import hashlib
import os
import unicodedata

import pytest

from replicator.model import META_SOURCE_ETAG, META_SOURCE_MTIME
from replicator.service import Service
from testing.faultproxy import FaultProxy

from ..conftest import PART, REGIONS, THRESHOLD, World, eventually

pytestmark = pytest.mark.backends()


async def sync(world: World, **overrides: object) -> Service:
    async with Service(world.config(**overrides)) as service:
        assert await service.sync(), await service.journal.report.failures()
    return service


@pytest.mark.parametrize("size", [0, 1, THRESHOLD - 1, THRESHOLD, THRESHOLD + 1, PART - 1, PART,
                                  PART + 1, 2 * PART + 1, 10 * PART])
async def test_every_size_arrives_byte_identical(world: World, size: int) -> None:
    world.put(f"obj-{size}", os.urandom(size))
    service = await sync(world)
    assert world.converged()
    assert {r: service.scheduler.tally[r]["copied"] for r in REGIONS} == dict.fromkeys(REGIONS, 1)


async def test_a_backfill_lists_each_region_instead_of_probing_every_object(
        world: World, proxies: dict[str, FaultProxy]) -> None:
    """One GET per object and one PUT per object and region: a region's listing shows which
    keys it lacks, so no HEAD is sent to learn it one 404 at a time."""
    count = 30
    for i in range(count):
        world.put(f"k/{i:04d}", b"body %d" % i)
    held, stranger = REGIONS[0], "k/0007"  # put there by someone else: probed, then overwritten
    world.clients[held].put_object(Bucket=world.buckets[held], Key=stranger, Body=b"old")
    await sync(world)
    assert world.converged()

    def requests(name: str, method: str) -> list[str]:
        prefix = f"/{world.buckets[name]}/k/"
        return [path for m, path, _ in proxies[name].log if m == method and path.startswith(prefix)]
    assert len(requests("source", "GET")) == count
    for region in REGIONS:
        assert len(requests(region, "PUT")) == count
        assert requests(region, "HEAD") == ([f"/{world.buckets[held]}/{stranger}"]
                                            if region == held else [])


async def test_multipart_source_is_mirrored_part_for_part(world: World) -> None:
    """A replica of a multipart source carries the source's own etag: the bytes are proven."""
    src, bucket = world.source, world.buckets["source"]
    parts = [os.urandom(400), os.urandom(400), os.urandom(123)]
    upload = src.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    etags = [src.upload_part(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=i + 1,
                             Body=body)["ETag"] for i, body in enumerate(parts)]
    src.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload, MultipartUpload={
        "Parts": [{"PartNumber": i + 1, "ETag": e} for i, e in enumerate(etags)]})
    source_etag = src.head_object(Bucket=bucket, Key="mp")["ETag"]
    await sync(world)
    assert world.converged()
    for region in REGIONS:
        assert world.clients[region].head_object(Bucket=world.buckets[region], Key="mp")["ETag"] \
            == source_etag
    assert world.open_uploads() == {r: [] for r in REGIONS}


@pytest.mark.parametrize("size", [100, 5 * PART])
async def test_metadata_and_content_headers_are_preserved(world: World, size: int) -> None:
    attrs = {"ContentType": "image/png", "CacheControl": "max-age=60",
             "ContentDisposition": 'attachment; filename="a.png"', "ContentEncoding": "identity",
             "ContentLanguage": "en-GB", "Expires": "Wed, 21 Oct 2026 07:28:00 GMT"}
    etag = world.put("pic.png", os.urandom(size), Metadata={"owner": "ops", "colour": "blue"},
                     **attrs)
    source_head = world.source.head_object(Bucket=world.buckets["source"], Key="pic.png")
    if "expires" in world.backend.lacks:  # the source itself drops it: nothing to replicate
        del attrs["Expires"]
    await sync(world)
    for region in REGIONS:
        head = world.clients[region].head_object(Bucket=world.buckets[region], Key="pic.png")
        for name, value in attrs.items():
            got = head.get("ExpiresString") if name == "Expires" else head.get(name)
            assert got == value, (region, name)
        # Metadata names are HTTP header names, so case-blind; rclone answers in Title-Case.
        meta = {k.lower(): v for k, v in head["Metadata"].items()}
        assert meta["owner"] == "ops" and meta["colour"] == "blue"
        assert meta[META_SOURCE_ETAG] == etag
        assert float(meta[META_SOURCE_MTIME]) == source_head["LastModified"].timestamp()


@pytest.mark.parametrize("size", [100, 5 * PART])
async def test_tags_are_preserved(world: World, size: int) -> None:
    world.backend.require("tagging")
    world.put("tagged", os.urandom(size), Tagging="team=storage&tier=gold")
    await sync(world)
    for region in REGIONS:
        tags = world.clients[region].get_object_tagging(Bucket=world.buckets[region],
                                                        Key="tagged")["TagSet"]
        assert sorted((t["Key"], t["Value"]) for t in tags) == [("team", "storage"), ("tier", "gold")]


TRICKY_KEYS = [
    "with space", "plus+sign", "percent%2Bencoded", "amp&ersand", "colon:key",
    unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café"), "emoji-🚀",
    "dir/sub/key", "é" * 127 + "x",  # 255 bytes of UTF-8: the most a file name holds
]
#: Keys S3 holds and a file system cannot: no such file name, or one that aliases another.
PATH_UNSAFE_KEYS = ["a//b", "/leading", "trailing/", "é" * 511 + "xx"]  # the last: 1024 bytes


@pytest.mark.parametrize("keys", [TRICKY_KEYS, PATH_UNSAFE_KEYS], ids=["portable", "path-unsafe"])
async def test_tricky_keys_keep_their_exact_names(world: World, keys: list[str]) -> None:
    if keys is PATH_UNSAFE_KEYS:
        world.backend.require("path_unsafe_keys")
    assert len(TRICKY_KEYS[-1].encode()) == 255 and len(PATH_UNSAFE_KEYS[-1].encode()) == 1024
    for i, key in enumerate(keys):
        world.put(key, f"body {i}".encode())
    await sync(world)
    want = world.objects("source")
    assert sorted(want) == sorted(keys)
    for region in REGIONS:
        assert world.objects(region) == want


async def test_deletes_are_replicated(world: World) -> None:
    for i in range(4):
        world.put(f"k{i}", b"x" * i)
    await sync(world)
    world.source.delete_object(Bucket=world.buckets["source"], Key="k1")
    world.source.delete_object(Bucket=world.buckets["source"], Key="k3")
    service = await sync(world)
    assert world.converged()
    assert sorted(world.objects("r2")) == ["k0", "k2"]
    assert service.scheduler.tally["r2"]["deleted"] == 2


async def test_deletes_are_kept_when_configured_off(world: World) -> None:
    world.put("keep", b"1")
    await sync(world)
    world.source.delete_object(Bucket=world.buckets["source"], Key="keep")
    await sync(world, replication__replicate_deletes=False)
    assert all("keep" in world.objects(r) for r in REGIONS)


async def test_second_pass_skips_what_is_already_there(world: World) -> None:
    """With the journal lost, a pass finds the replicas by their markers and copies nothing."""
    for i in range(3):
        world.put(f"k{i}", os.urandom(50 + i * PART))
    await sync(world)
    os.remove(world.tmp / "journal.db")
    service = await sync(world)
    assert {r: dict(service.scheduler.tally[r]) for r in REGIONS} == {
        r: {"skipped": 3, "bytes": 0} for r in REGIONS}


async def test_daemon_ends_with_the_newest_of_rapid_overwrites(world: World) -> None:
    stop = asyncio.Event()
    async with Service(world.config()) as service:
        daemon = asyncio.create_task(service.run(stop))
        try:
            for version in range(6):
                world.put("hot", f"version {version}".encode() * (1 + version * 60))
                world.put(f"cold-{version}", b"c")
                if version == 2:
                    await eventually(lambda: "hot" in world.objects("r1"), what="first copy")
            want = hashlib.md5(b"version 5" * 301).hexdigest()
            await eventually(lambda: world.converged() and world.objects("r3")["hot"] == want,
                             what="newest content everywhere")
        finally:
            stop.set()
            await asyncio.wait_for(daemon, 30)
