"""Checksums computed while bytes stream through, and the comparisons that prove a copy.

A copy is done only when every comparison here has passed: the bytes read
match the source's etag, and what each destination says it stored matches
what was sent. moto (unlike S3) does not validate ``Content-MD5``, so the
comparison of returned ETags is what catches a corrupted body there.
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from dataclasses import dataclass

from .errors import ChecksumMismatch
from .s3 import Written


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


@dataclass(frozen=True, slots=True)
class Digest:
    """The checksums of one body (an object or one part)."""

    md5: bytes
    algorithm: str
    checksum: str

    @property
    def md5_hex(self) -> str:
        return self.md5.hex()

    @property
    def md5_b64(self) -> str:
        return _b64(self.md5)

    @property
    def header(self) -> tuple[str, str]:
        return self.algorithm, self.checksum


def digest(body: bytes | bytearray, algorithm: str) -> Digest:
    """MD5 (for Content-MD5 and ETags) plus the configured additional checksum."""
    if algorithm == "crc32":
        extra = _b64(zlib.crc32(body).to_bytes(4, "big"))
    else:
        extra = _b64(hashlib.new(algorithm, body).digest())
    return Digest(hashlib.md5(body).digest(), algorithm, extra)


def composite_etag(part_md5s: list[bytes]) -> str:
    """The ETag S3 gives a multipart object: md5 of the part md5s, dash, part count."""
    return f"{hashlib.md5(b''.join(part_md5s)).hexdigest()}-{len(part_md5s)}"


def check_written(where: str, sent: Digest, got: Written) -> None:
    """The destination must report exactly the bytes that were sent."""
    if got.etag != sent.md5_hex:
        raise ChecksumMismatch(f"{where}: corrupted on transfer: sent md5 {sent.md5_hex}, "
                               f"destination stored {got.etag}")
    if got.checksum is not None and got.checksum != sent.checksum:
        raise ChecksumMismatch(f"{where}: corrupted on transfer: sent {sent.algorithm} "
                               f"{sent.checksum}, destination stored {got.checksum}")


def check_source(where: str, source_etag: str, computed_etag: str) -> None:
    """The bytes read must be the bytes the source advertises."""
    if computed_etag != source_etag:
        raise ChecksumMismatch(f"{where}: corrupted on read: source etag {source_etag}, "
                               f"bytes read give {computed_etag}")
