"""Where AWS is stricter than moto, as pure rules: part plans, read proofs, write proofs,
error mapping. Milliseconds each; the same behaviours end to end are in
tests/integration/test_real_s3.py."""

from __future__ import annotations

import base64
import hashlib
import os
from typing import Any

import pytest
from botocore.exceptions import ClientError

from replicator import errors
from replicator.copier import replica_is_current, replica_is_intact
from replicator.model import META_CHECKSUM, META_MD5, META_SOURCE_ETAG, Change, Kind, Written
from replicator.plan import MAX_MIRRORED_PART, MAX_PARTS, Chunk, chunk
from replicator.s3 import Head, _from_client_error
from replicator.verifier import ReadProof, SourcePart, checksum, composite_etag, digest

MiB = 2**20


def _parts(*sizes: int, algorithm: str | None = None, body: bytes = b"") -> list[SourcePart]:
    out, offset = [], 0
    for size in sizes:
        value = (algorithm, checksum(body[offset:offset + size], algorithm)) if algorithm else None
        out.append(SourcePart(offset, offset + size - 1, value))
        offset += size
    return out


def _contiguous(chunks: list[Chunk], size: int) -> bool:
    return chunks[0].first == 0 and chunks[-1].last == size - 1 and all(
        a.last + 1 == b.first for a, b in zip(chunks, chunks[1:], strict=False)) and \
        [c.number for c in chunks] == list(range(1, len(chunks) + 1))


def test_parts_of_different_sizes_are_mirrored_exactly() -> None:
    """5, 7 and 6 MiB plus a 1 KiB tail: legal in S3, and the replica must have the same parts."""
    sizes = (5 * MiB, 7 * MiB, 6 * MiB, 1024)
    chunks = chunk(sum(sizes), 8 * MiB, _parts(*sizes))
    assert [c.size for c in chunks] == list(sizes)
    assert _contiguous(chunks, sum(sizes))


def test_part_size_grows_so_no_object_needs_more_than_10000_parts() -> None:
    """At 8 MiB parts a 100 GiB object would need 12,800: S3 refuses part 10,001."""
    size = 100 * 2**30 + 12345
    chunks = chunk(size, 8 * MiB, None)
    assert len(chunks) <= MAX_PARTS
    assert min(c.size for c in chunks[:-1]) >= 8 * MiB
    assert _contiguous(chunks, size)


def test_parts_too_large_to_mirror_are_cut_within_each_source_part() -> None:
    """Cuts never straddle two source parts (so each part's digest can still be proven), and
    none is smaller than the part size (so S3's 5 MiB minimum holds)."""
    sizes = (MAX_MIRRORED_PART + 3 * MiB + 17, 5 * MiB)
    parts = _parts(*sizes)
    chunks = chunk(sum(sizes), 8 * MiB, parts)
    assert _contiguous(chunks, sum(sizes))
    assert all(c.size >= 8 * MiB for c in chunks[:-1])
    assert any(c.last == parts[0].last for c in chunks)  # a cut ends where source part 1 ends
    assert chunks[-1] == Chunk(len(chunks), parts[1].first, parts[1].last)


def _feed(proof: ReadProof, body: bytes, chunks: list[Chunk]) -> ReadProof:
    for c in chunks:
        data = body[c.first:c.last + 1]
        proof.feed(data, hashlib.md5(data).digest())
    proof.finish(len(body))
    return proof


def test_a_multipart_read_is_proven_against_the_composite_etag_whatever_the_cuts() -> None:
    body = os.urandom(1000 + 1400 + 1200 + 7)
    sizes = (1000, 1400, 1200, 7)
    etag = composite_etag([hashlib.md5(body[p.first:p.last + 1]).digest() for p in _parts(*sizes)])
    mirrored = chunk(len(body), 300, _parts(*sizes))
    assert _feed(ReadProof("k", etag, True, _parts(*sizes)), body, mirrored).proven
    cut = [Chunk(1, 0, 499), Chunk(2, 500, 999), Chunk(3, 1000, 2399), Chunk(4, 2400, 3599),
           Chunk(5, 3600, 3606)]
    assert _feed(ReadProof("k", etag, True, _parts(*sizes)), body, cut).proven
    bad = bytearray(body)
    bad[1500] ^= 1
    with pytest.raises(errors.ChecksumMismatch, match="corrupted on read"):
        _feed(ReadProof("k", etag, True, _parts(*sizes)), bytes(bad), cut)


def test_a_read_the_etag_cannot_prove_is_proven_by_the_part_checksums_or_flagged() -> None:
    """SSE-KMS multipart: the etag is no digest. Stored part checksums prove the bytes; with
    none, the read is not proven (and the copy is flagged), never silently good."""
    body = os.urandom(2500)
    kms_etag = "0123456789abcdef0123456789abcdef-2"
    with_sums = _parts(1500, 1000, algorithm="crc32c", body=body)
    chunks = chunk(len(body), 300, with_sums)
    proof = _feed(ReadProof("k", kms_etag, False, with_sums), body, chunks)
    assert proof.proven and proof.proofs == 2
    bad = bytearray(body)
    bad[2000] ^= 1
    with pytest.raises(errors.ChecksumMismatch, match="part 2 from source"):
        _feed(ReadProof("k", kms_etag, False, with_sums), bytes(bad), chunks)
    assert not _feed(ReadProof("k", kms_etag, False, _parts(1500, 1000)), body, chunks).proven


@pytest.mark.parametrize("algorithm", ["crc32", "crc32c", "crc64nvme", "sha1", "sha256"])
def test_a_whole_object_checksum_proves_a_read(algorithm: str) -> None:
    body = os.urandom(999)
    whole = (algorithm, checksum(body, algorithm))
    cuts = [Chunk(1, 0, 299), Chunk(2, 300, 998)]
    assert _feed(ReadProof("k", "not-an-md5", False, None, whole), body, cuts).proven
    with pytest.raises(errors.ChecksumMismatch):
        _feed(ReadProof("k", "not-an-md5", False, None, whole), body[:-1] + b"!", cuts)


def test_crc32c_and_crc64nvme_are_s3s() -> None:
    """The standard check values of "123456789", big-endian, base64 as S3 sends them."""
    assert checksum(b"123456789", "crc32c") == base64.b64encode(
        (0xE3069283).to_bytes(4, "big")).decode()
    assert checksum(b"123456789", "crc64nvme") == base64.b64encode(
        (0xAE8B14860A799888).to_bytes(8, "big")).decode()
    assert digest(b"x", "none").header is None


def test_an_encrypted_write_is_proven_by_its_checksum_not_its_etag() -> None:
    """Under SSE-KMS the etag is not the md5: it must not condemn a good write (and the
    replica must not be deleted over it); the echoed checksum decides."""
    from replicator.verifier import check_written
    sent = digest(b"payload", "sha256")
    kms = "ffffffffffffffffffffffffffffffff"
    assert check_written("k", sent, Written(kms, sent.checksum, encrypted=True))
    assert not check_written("k", sent, Written(kms, None, encrypted=True))  # unproven
    with pytest.raises(errors.ChecksumMismatch):
        check_written("k", sent, Written(kms, "AAAA", encrypted=True))
    with pytest.raises(errors.ChecksumMismatch):  # an md5 etag that differs is a corrupt copy
        check_written("k", sent, Written(kms, None, encrypted=False))


def test_a_replica_of_an_encrypted_source_is_current_by_its_marker() -> None:
    """A KMS source's etag is no md5: its replica (plain or KMS) is judged by the md5 and
    checksum it was written with, or it would be copied again forever."""
    sent = digest(b"payload", "sha256")
    source_etag = "0123456789abcdef0123456789abcdef"
    change = Change("k", Kind.PUT, source_etag, 7, 50.0)
    meta = {META_SOURCE_ETAG: source_etag, META_MD5: sent.md5_hex,
            META_CHECKSUM: f"sha256:{sent.checksum}"}
    plain = Head(sent.md5_hex, 7, 60.0, metadata=meta)
    assert replica_is_current(change, plain)
    assert not replica_is_current(change, Head("0" * 32, 7, 60.0, metadata=meta))  # corrupt
    kms = Head("f" * 32, 7, 60.0, metadata=meta, etag_is_md5=False,
               checksums={"sha256": sent.checksum or ""})
    assert replica_is_intact(kms, source_etag)
    assert not replica_is_intact(
        Head("f" * 32, 7, 60.0, metadata=meta, etag_is_md5=False, checksums={"sha256": "AAAA"}),
        source_etag)


def _client_error(code: str, status: int) -> ClientError:
    response: Any = {"Error": {"Code": code, "Message": "m"},
                     "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": {}}}
    return ClientError(response, "op")


def test_a_412_on_a_replica_write_means_the_replica_changed_not_the_source() -> None:
    for op in ("PutObject", "CompleteMultipartUpload"):
        assert isinstance(_from_client_error("r1", op, _client_error("PreconditionFailed", 412)),
                          errors.ReplicaChanged)
    assert isinstance(_from_client_error("source", "GetObject",
                                         _client_error("PreconditionFailed", 412)),
                      errors.SourceChanged)


def test_an_archived_source_is_permanent_with_its_own_reason() -> None:
    exc = _from_client_error("source", "GetObject", _client_error("InvalidObjectState", 403))
    assert isinstance(exc, errors.PermanentError) and exc.reason == "archived"


def test_a_replica_gone_under_a_conditional_write_or_a_lost_upload_is_not_a_vanished_source() -> None:
    """A 404 to If-Match means the replica changed (re-plan); a lost upload is retried.
    Neither is `source_vanished`, a permanent reason that would park the row."""
    gone = _from_client_error("r1", "PutObject", _client_error("NoSuchKey", 404))
    assert isinstance(gone, errors.ReplicaChanged)
    lost = _from_client_error("r1", "UploadPart", _client_error("NoSuchUpload", 404))
    assert isinstance(lost, errors.RetryableError) and lost.reason == "upload_lost"
    for op in ("AbortMultipartUpload", "ListMultipartUploads"):  # gone already; rclone's none
        assert isinstance(_from_client_error("r1", op, _client_error("NoSuchUpload", 404)),
                          errors.NoSuchKey)
