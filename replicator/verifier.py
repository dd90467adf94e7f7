"""Checksums computed while bytes stream through, and the comparisons that prove a copy.

A copy is done only when every comparison here has passed: the bytes read
match what the source advertises (``ReadProof``), and what each destination
says it stored matches what was sent (``check_written``). moto (unlike S3) does
not validate ``Content-MD5``, so the comparison of returned ETags is what
catches a corrupted body there; under SSE-KMS and SSE-C an ETag is not an md5,
and the returned checksum proves the write instead.
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from awscrt import checksums as crt

from .errors import ChecksumMismatch
from .model import Written


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


class Hasher(Protocol):
    def update(self, data: bytes | bytearray | memoryview, /) -> None: ...
    def digest(self) -> bytes: ...


class _Crc:
    """A running CRC with the ``hashlib`` interface; S3 sends CRCs big-endian."""

    def __init__(self, fn: Callable[[Any, int], int], width: int) -> None:
        self._fn = fn
        self._width = width
        self._value = 0

    def update(self, data: bytes | bytearray | memoryview, /) -> None:
        self._value = self._fn(data, self._value)

    def digest(self) -> bytes:
        return self._value.to_bytes(self._width, "big")


_CRCS: dict[str, tuple[Callable[[Any, int], int], int]] = {
    "crc32": (zlib.crc32, 4), "crc32c": (crt.crc32c, 4), "crc64nvme": (crt.crc64nvme, 8)}
#: Every additional checksum S3 offers; ``none`` sends only Content-MD5.
ALGORITHMS = ("sha256", "sha1", *_CRCS)


def hasher(algorithm: str) -> Hasher:
    """A running hash of one of S3's checksum algorithms."""
    if algorithm in _CRCS:
        return _Crc(*_CRCS[algorithm])
    return hashlib.new(algorithm)


def checksum(data: bytes | bytearray, algorithm: str) -> str:
    """S3's base64 form of one checksum of ``data``."""
    h = hasher(algorithm)
    h.update(data)
    return _b64(h.digest())


@dataclass(frozen=True, slots=True)
class Digest:
    """The checksums of one body (an object or one part)."""

    md5: bytes
    algorithm: str
    checksum: str | None

    @property
    def md5_hex(self) -> str:
        return self.md5.hex()

    @property
    def md5_b64(self) -> str:
        return _b64(self.md5)

    @property
    def header(self) -> tuple[str, str] | None:
        """The ``x-amz-checksum-*`` to send, if any."""
        return (self.algorithm, self.checksum) if self.checksum is not None else None


def digest(body: bytes | bytearray, algorithm: str) -> Digest:
    """MD5 (for Content-MD5 and ETags) plus the configured additional checksum."""
    extra = None if algorithm == "none" else checksum(body, algorithm)
    return Digest(hashlib.md5(body).digest(), algorithm, extra)


def composite_etag(part_md5s: list[bytes]) -> str:
    """The ETag S3 gives a multipart object: md5 of the part md5s, dash, part count."""
    return f"{hashlib.md5(b''.join(part_md5s)).hexdigest()}-{len(part_md5s)}"


def check_written(where: str, sent: Digest, got: Written) -> bool:
    """The destination must report exactly the bytes that were sent.

    Raises ``ChecksumMismatch`` when what it stored differs. Returns whether the
    write is proven: an encrypted write (its etag no md5) that echoes no checksum
    is accepted by the server's Content-MD5 check alone, which some stores skip.
    """
    if got.checksum is not None and got.checksum != sent.checksum:
        raise ChecksumMismatch(f"{where}: corrupted on transfer: sent {sent.algorithm} "
                               f"{sent.checksum}, destination stored {got.checksum}")
    if got.encrypted:
        return got.checksum is not None
    if got.etag != sent.md5_hex:
        raise ChecksumMismatch(f"{where}: corrupted on transfer: sent md5 {sent.md5_hex}, "
                               f"destination stored {got.etag}")
    return True


def check_source(where: str, source_etag: str, computed_etag: str) -> None:
    """The bytes read must be the bytes the source advertises."""
    if computed_etag != source_etag:
        raise ChecksumMismatch(f"{where}: corrupted on read: source etag {source_etag}, "
                               f"bytes read give {computed_etag}")


@dataclass(frozen=True, slots=True)
class SourcePart:
    """One part of a multipart source: its bytes ``first..last`` and the checksum S3 holds."""

    first: int
    last: int
    checksum: tuple[str, str] | None = None  # (algorithm, base64) of this part's bytes

    @property
    def size(self) -> int:
        return self.last - self.first + 1


@dataclass
class ReadProof:
    """Proves the bytes read from the source against what the source advertises.

    Bytes are fed in order, in chunks that never straddle two source parts.
    Every proof the source offers is checked: the md5 etag of a plain object,
    the composite etag of a multipart one (its parts known), a part's or the
    whole object's stored checksum. A source that offers none (an encrypted
    object without checksums, parts that cannot be learned) leaves the read
    ``proven = False``: copied, and flagged, never silently called good.
    """

    key: str
    etag: str
    etag_is_md5: bool
    parts: list[SourcePart] | None = None
    whole: tuple[str, str] | None = None  # a full-object checksum (algorithm, base64)
    _part: int = 0
    _offset: int = 0
    _part_md5s: list[bytes] = field(default_factory=list)
    _running_md5: Hasher | None = None
    _running_part: _PartHash | None = None
    _running_whole: Hasher | None = None
    proofs: int = 0

    def __post_init__(self) -> None:
        if self.whole is not None:
            self._running_whole = hasher(self.whole[0])
        if self.etag_is_md5 and "-" not in self.etag:
            self._running_md5 = hashlib.md5()

    @property
    def proven(self) -> bool:
        return self.proofs > 0

    def feed(self, data: bytes | bytearray, md5: bytes) -> None:
        """Take the next chunk (and its md5, already computed for Content-MD5)."""
        if self._running_md5 is not None:
            self._running_md5.update(data)
        if self._running_whole is not None:
            self._running_whole.update(data)
        if self.parts is not None:
            self._feed_part(data, md5)
        self._offset += len(data)

    def _feed_part(self, data: bytes | bytearray, md5: bytes) -> None:
        part = self.parts[self._part]  # type: ignore[index]
        whole_part = self._offset == part.first and len(data) == part.size
        if self._running_part is None:
            self._running_part = _PartHash(part, md5 if whole_part else None)
        self._running_part.update(data)
        if self._offset + len(data) > part.last:
            self._end_part(part)

    def _end_part(self, part: SourcePart) -> None:
        running = self._running_part
        assert running is not None
        self._part_md5s.append(running.md5())
        if part.checksum is not None:
            got = _b64(running.checksum())
            if got != part.checksum[1]:
                raise ChecksumMismatch(f"{self.key} part {self._part + 1} from source: corrupted "
                                       f"on read: source {part.checksum[0]} {part.checksum[1]}, "
                                       f"bytes read give {got}")
            self.proofs += 1
        self._part += 1
        self._running_part = None

    def finish(self, size: int) -> None:
        """All bytes read: run the whole-object comparisons."""
        if self._offset != size:
            raise ChecksumMismatch(f"{self.key}: read {self._offset} of {size} bytes")
        where = f"{self.key} from source"
        if self._running_md5 is not None:
            check_source(where, self.etag, self._running_md5.digest().hex())
            self.proofs += 1
        if self.parts is not None and self.etag_is_md5 and "-" in self.etag:
            check_source(where, self.etag, composite_etag(self._part_md5s))
            self.proofs += 1
        if self.whole is not None and self._running_whole is not None:
            got = _b64(self._running_whole.digest())
            if got != self.whole[1]:
                raise ChecksumMismatch(f"{where}: corrupted on read: source {self.whole[0]} "
                                       f"{self.whole[1]}, bytes read give {got}")
            self.proofs += 1


class _PartHash:
    """The md5 (for the composite etag) and stored-checksum hash of one source part."""

    def __init__(self, part: SourcePart, md5: bytes | None) -> None:
        self._md5 = None if md5 is not None else hashlib.md5()
        self._known_md5 = md5
        self._sum = hasher(part.checksum[0]) if part.checksum else None

    def update(self, data: bytes | bytearray) -> None:
        if self._md5 is not None:
            self._md5.update(data)
        if self._sum is not None:
            self._sum.update(data)

    def md5(self) -> bytes:
        if self._known_md5 is not None:
            return self._known_md5
        assert self._md5 is not None
        return self._md5.digest()

    def checksum(self) -> bytes:
        assert self._sum is not None
        return self._sum.digest()
