"""How a large object is read and written: its source parts, our parts, and the proof.

A multipart source is mirrored part for part: its part sizes are learned from
``HEAD ?partNumber=N`` (S3 answers each with that part's ``Content-Length``;
sizes may differ, only the last may be under 5 MiB), and each part is read as
the exact byte range it covers, so the replica has the source's parts and so
its etag, and the bytes read are proven against the source's composite etag
or its part checksums. Ranges rather than ``GET ?partNumber=N`` because some
servers (moto, among others) ignore the part number on GET and send the whole
object: a range means the same on every server.

Where mirroring is impossible (parts over ``MAX_MIRRORED_PART``, or a server
that does not tell part sizes) the object is cut into parts of our own, within
S3's 10,000-part limit, and the read proven by whatever else the source offers.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass

from . import errors
from .model import Change
from .s3 import Head, ObjectStore
from .verifier import ALGORITHMS, ReadProof, SourcePart

#: S3's limit on the parts of one upload.
MAX_PARTS = 10_000
#: Largest source part we mirror part-for-part (to reproduce the source's etag exactly).
MAX_MIRRORED_PART = 256 * 2**20
#: Part-size HEADs of one object in flight at once.
PART_HEADS = 8


@dataclass(frozen=True, slots=True)
class Chunk:
    """One part of the replica: the source's bytes ``first..last``."""

    number: int
    first: int
    last: int

    @property
    def size(self) -> int:
        return self.last - self.first + 1


@dataclass(frozen=True, slots=True)
class Plan:
    """The parts to write and the proof the bytes read must pass."""

    chunks: list[Chunk]
    proof: ReadProof

    @property
    def mirrored(self) -> bool:
        parts = self.proof.parts
        return parts is not None and len(parts) == len(self.chunks)

    @property
    def largest(self) -> int:
        return max(c.size for c in self.chunks)


def chunk(size: int, part_size: int, parts: list[SourcePart] | None) -> list[Chunk]:
    """Our parts: the source's own where they can be mirrored, else cuts within each of them.

    Every part but the last of a source part is ``step`` bytes; the last takes the
    remainder (so none is under ``step``, S3's minimum holds). ``step`` grows so that
    no object needs more than ``MAX_PARTS`` parts.
    """
    if parts and max(p.size for p in parts) <= MAX_MIRRORED_PART:
        return [Chunk(n, p.first, p.last) for n, p in enumerate(parts, 1)]
    spans = parts or [SourcePart(0, size - 1)]
    step = max(part_size, math.ceil(size / MAX_PARTS))
    chunks: list[Chunk] = []
    for span in spans:
        pieces = max(1, span.size // step)
        for i in range(pieces):
            first = span.first + i * step
            last = span.last if i == pieces - 1 else first + step - 1
            chunks.append(Chunk(len(chunks) + 1, first, last))
    return chunks


async def plan(source: ObjectStore, change: Change, part_size: int) -> Plan:
    """Learn the source's parts and checksums (one HEAD, plus one per further part)."""
    first = await source.head(change.key, 1 if change.multipart_etag else None, checksums=True)
    if first is None:
        raise errors.NoSuchKey(f"{change.key}: gone from the source")
    parts = await _parts(source, change, first) if change.multipart_etag else None
    proof = ReadProof(change.key, change.etag, first.etag_is_md5, parts,
                      _whole(first, change.multipart_etag))
    return Plan(chunk(change.size, part_size, parts), proof)


async def _parts(source: ObjectStore, change: Change, first: Head) -> list[SourcePart] | None:
    """Each part's range (and checksum), or None where the server does not say."""
    count = first.parts_count
    if not count or count > MAX_PARTS:
        return None
    window = asyncio.Semaphore(PART_HEADS)

    async def head(number: int) -> Head | None:
        async with window:
            return await source.head(change.key, number, checksums=True)
    heads = [first, *await asyncio.gather(*(head(n) for n in range(2, count + 1)))]
    parts: list[SourcePart] = []
    offset = 0
    for h in heads:
        if h is None:
            raise errors.SourceChanged(f"{change.key}: changed while its parts were listed")
        parts.append(SourcePart(offset, offset + h.length - 1, _part_checksum(h)))
        offset += h.length
    return parts if offset == change.size else None


def _part_checksum(head: Head) -> tuple[str, str] | None:
    """A part's own checksum: only from a true part answer (a Content-Range, as S3 sends)
    of a composite-checksum object; a full-object checksum is the whole object's."""
    if not head.ranged or head.checksum_type == "FULL_OBJECT":
        return None
    return stored_checksum(head)


def _whole(head: Head, multipart: bool) -> tuple[str, str] | None:
    """A checksum of the whole object's bytes, if the answer carries one.

    The answer to ``?partNumber=1`` of a multipart object carries part 1's checksum,
    unless the object's checksum is a full-object one; a server that ignored the
    part number (no parts count) answered for the whole object.
    """
    if multipart and head.parts_count is not None and \
            not (head.ranged and head.checksum_type == "FULL_OBJECT"):
        return None
    return stored_checksum(head)


def stored_checksum(head: Head) -> tuple[str, str] | None:
    """A checksum the answer carries of its bytes (not a composite of part checksums)."""
    for algorithm in ALGORITHMS:
        value = head.checksums.get(algorithm)
        if value and "-" not in value:  # "-N": a checksum of checksums, not of bytes
            return algorithm, value
    return None
