"""Pure pieces: checksums, the replica rule, retry policy, and the journal's bookkeeping."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import random
import zlib
from pathlib import Path

import pytest

from replicator import errors
from replicator.body import BodyReader, read_exactly
from replicator.budget import ByteBudget
from replicator.config import Retry
from replicator.copier import replica_is_current
from replicator.journal import Journal
from replicator.model import META_SOURCE_ETAG, META_SOURCE_MTIME, Change, Kind, Listed, Written
from replicator.retry import RequestRetry, item_delay
from replicator.s3 import Head
from replicator.verifier import check_source, check_written, composite_etag, digest


@pytest.mark.parametrize(("algorithm", "expected"), [
    ("sha256", base64.b64encode(hashlib.sha256(b"abc").digest()).decode()),
    ("sha1", base64.b64encode(hashlib.sha1(b"abc").digest()).decode()),
    ("crc32", base64.b64encode(zlib.crc32(b"abc").to_bytes(4, "big")).decode()),
])
def test_digest(algorithm: str, expected: str) -> None:
    d = digest(b"abc", algorithm)
    assert d.md5_hex == hashlib.md5(b"abc").hexdigest()
    assert d.header == (algorithm, expected)


def test_composite_etag_matches_s3s_rule() -> None:
    parts = [hashlib.md5(b"a").digest(), hashlib.md5(b"b").digest()]
    assert composite_etag(parts) == hashlib.md5(parts[0] + parts[1]).hexdigest() + "-2"


def test_written_bytes_must_match_what_was_sent() -> None:
    sent = digest(b"payload", "sha256")
    check_written("k", sent, Written(sent.md5_hex, sent.checksum))
    check_written("k", sent, Written(sent.md5_hex, None))  # endpoints that echo no checksum
    with pytest.raises(errors.ChecksumMismatch, match="corrupted on transfer"):
        check_written("k", sent, Written(hashlib.md5(b"paylaod").hexdigest()))
    with pytest.raises(errors.ChecksumMismatch):
        check_written("k", sent, Written(sent.md5_hex, "AAAA"))
    with pytest.raises(errors.ChecksumMismatch, match="corrupted on read"):
        check_source("k", "abc", "abd")


def _head(etag: str, marker: str | None, mtime: float = 100.0, size: int = 5) -> Head:
    meta = {} if marker is None else {META_SOURCE_ETAG: marker, META_SOURCE_MTIME: f"{mtime:.3f}"}
    return Head(etag=etag, size=size, last_modified=0.0, metadata=meta)


def test_replica_rule() -> None:
    change = Change("k", Kind.PUT, etag="e1", size=5, last_modified=100.0)
    assert not replica_is_current(change, None)
    assert replica_is_current(change, _head("e1", "e1"))
    assert replica_is_current(change, _head("abc-2", "e1"))           # our multipart copy
    assert not replica_is_current(change, _head("bad", "e1"))         # corrupt single-part copy
    assert not replica_is_current(change, _head("e1", "e1", size=4))
    assert not replica_is_current(change, _head("e0", "e0", mtime=99.0))  # older: overwrite
    assert replica_is_current(change, _head("e2", "e2", mtime=101.0))     # newer: never overwrite
    assert not replica_is_current(change, _head("e1", None))          # not ours: copy with markers


async def test_request_retry_backs_off_on_retryable_and_honours_retry_after() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    policy = Retry(request_attempts=4, request_backoff=0.1, request_backoff_max=1.0)
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise errors.Throttled("slow down", retry_after=5)
        if calls < 4:
            raise errors.TransientError("reset")
        return "ok"

    assert await RequestRetry(policy, sleep=sleep).call(flaky, name="t", op="Get") == "ok"
    assert len(slept) == 3 and slept[0] >= 5
    assert all(0.1 <= s <= 1.0 + 0.1 for s in slept[1:])


async def test_request_retry_fails_fast_on_permanent_errors() -> None:
    calls = 0

    async def denied() -> None:
        nonlocal calls
        calls += 1
        raise errors.AccessDenied("no")

    with pytest.raises(errors.AccessDenied):
        await RequestRetry(Retry()).call(denied, name="t", op="Get")
    assert calls == 1


def test_item_delay_grows_then_settles_on_the_failed_interval() -> None:
    policy = Retry(item_attempts=5, item_backoff=2, item_backoff_max=10, failed_interval=900)
    rng = random.Random(1)
    delays = [item_delay(policy, n, rng) for n in range(1, 6)]
    bounds = [(1, 2), (2, 4), (4, 8), (5, 10)]
    assert all(lo <= d <= hi for d, (lo, hi) in zip(delays, bounds, strict=False))
    assert delays[-1] == 900


async def test_journal_diffs_listings_and_only_removes_the_change_it_verified(tmp_path: Path) -> None:
    journal = await Journal(tmp_path / "j.db").open()
    listing, work = journal.listing, journal.work
    try:
        regions = ["a", "b"]
        await listing.begin_listing()
        await listing.stage([Listed("k1", "e1", 1, 10.0), Listed("k2", "e2", 2, 10.0)])
        diff = await listing.commit_listing(regions, lambda k: True, True, lambda *a: True)
        assert (diff.puts, diff.deletes, diff.listed) == (2, 0, 2)
        assert await work.count() == 4

        # A newer change of k1 arrives while the old one is being copied.
        old = next(p for p in await work.due(1e12, 10, {"a", "b"}, set()) if p.change.key == "k1")
        await listing.begin_listing()
        await listing.stage([Listed("k1", "e1b", 1, 11.0), Listed("k2", "e2", 2, 10.0)])
        assert (await listing.commit_listing(regions, lambda k: True, True, lambda *a: True)).puts == 1
        assert not await work.finish(old)  # the newer change stays queued
        due = await work.due(1e12, 10, {"a", "b"}, set())
        rows = {(p.change.key, p.region): p.change.etag for p in due}
        assert rows[("k1", "a")] == "e1b"

        # A listing that never completes changes nothing; a complete one without k2 deletes it.
        await listing.begin_listing()
        await listing.stage([Listed("k1", "e1b", 1, 11.0)])
        await listing.abandon_listing()
        await listing.begin_listing()
        await listing.stage([Listed("k1", "e1b", 1, 11.0)])
        assert (await listing.commit_listing(regions, lambda k: True, True, lambda *a: True)).deletes == 1
        kinds = {(p.change.key, p.change.kind) for p in await work.due(1e12, 10, {"a", "b"}, set())}
        assert ("k2", Kind.DELETE) in kinds

        row = (await work.due(1e12, 1, {"a", "b"}, set()))[0]
        await work.postpone(row, reason="network", error="refused", next_try=2e12, failed=True)
        failed = await journal.report.failures()
        assert [(f.change.key, f.region, f.state, f.attempts, f.reason) for f in failed] == [
            (row.change.key, row.region, "failed", 1, "network")]
        assert row.change.key not in {p.change.key for p in await work.due(1e12, 10, {"a", "b"}, set())
                                      if p.region == row.region}
    finally:
        await journal.close()


async def test_byte_budget_never_lets_more_than_its_limit_through() -> None:
    budget = ByteBudget(100)
    peak = 0

    async def use(nbytes: int) -> None:
        nonlocal peak
        async with budget.hold(nbytes):
            peak = max(peak, budget.used)
            await asyncio.sleep(0)

    await asyncio.gather(*(use(n) for n in (60, 30, 50, 200, 10, 90)))
    assert peak <= 100 and budget.used == 0


def test_body_reader_streams_the_shared_bytes_without_copying_them() -> None:
    data = bytearray(random.Random(7).randbytes(1000))
    reader = BodyReader(data)
    assert reader.getbuffer().obj is data  # aiohttp sizes uploads with this: no copy
    assert reader.seek(0, io.SEEK_END) == 1000 and reader.tell() == 1000
    reader.seek(0)
    chunks = iter(lambda: reader.read(300), b"")
    assert b"".join(chunks) == data and reader.read() == b""
    reader.seek(990)
    into = bytearray(50)
    assert reader.readinto(into) == 10 and into[:10] == data[990:]


class _Stream:
    """aiobotocore's StreamingBody as far as ``read_exactly`` uses it."""

    def __init__(self, *chunks: bytes) -> None:
        self._chunks = list(chunks)

    async def read(self, size: int) -> bytes:
        return self._chunks.pop(0) if self._chunks else b""


async def test_read_exactly_fills_one_buffer_and_refuses_a_wrong_length() -> None:
    assert await read_exactly(_Stream(b"abc", b"de"), 5) == b"abcde"
    with pytest.raises(errors.TransientError, match="ended at 3 of 5"):
        await read_exactly(_Stream(b"abc"), 5)
    with pytest.raises(errors.TransientError, match="longer than"):
        await read_exactly(_Stream(b"abc", b"def"), 5)
