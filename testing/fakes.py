"""``MemoryStore``: an in-memory ``ObjectStore`` (``replicator.s3``) for unit tests.

It answers as ``S3Store`` does against AWS, errors already translated into
``replicator.errors``: md5 etags and composite ``md5-of-md5s-N`` multipart etags,
``HEAD ?partNumber=N`` with that part's length and checksum, ranged GETs pinned by
``If-Match`` (``SourceChanged`` when the etag moved), Content-MD5 and
``x-amz-checksum-*`` checked on every write (``ChecksumMismatch``), conditional
writes (``replacing``: If-Match on that etag, or If-None-Match: * where ``None``;
``ReplicaChanged`` when the replica is not the one planned over), archived objects
that cannot be read, and SSE-like stores whose etags are no md5s (``encrypted``).

Faults are knobs: ``fail(op, error, times)`` makes the next calls of one operation
raise, ``corrupt(op, times)`` damages the bytes of the next reads or writes (a write
then lands damaged and unnoticed, as on a store that skips the Content-MD5 check),
``before(op, action)`` runs ``action`` just before the next call of ``op`` (a
concurrent writer), and ``missing`` makes the bucket disappear. ``calls`` records
every ``(op, key)`` in order. Operations are named after the ``ObjectStore`` methods.
"""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from replicator import errors
from replicator.model import ARCHIVED_CLASSES, Listed, Written
from replicator.s3 import CONTENT_HEADERS, Head, NewObject, ObjectStore
from replicator.verifier import checksum, composite_etag, hasher

#: Checksums S3 keeps of the whole object only, never as a composite of parts.
FULL_OBJECT_ONLY = frozenset({"crc64nvme"})


@dataclass(frozen=True, slots=True)
class Part:
    """One part of a multipart object, as S3 keeps it."""

    body: bytes
    checksum: str | None = None  # of this part's bytes, base64, in the object's algorithm


@dataclass(frozen=True, slots=True)
class Stored:
    """One object in a ``MemoryStore``."""

    body: bytes
    etag: str
    last_modified: float
    metadata: dict[str, str] = field(default_factory=dict)
    headers: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    storage_class: str | None = None
    parts: tuple[Part, ...] | None = None  # a multipart object's parts
    algorithm: str | None = None  # the additional checksum it was written with
    checksum: str | None = None  # whole object (or composite ``b64-N``), in ``algorithm``

    @property
    def checksum_type(self) -> str | None:
        if self.parts is None or self.algorithm is None:
            return None
        return "FULL_OBJECT" if self.algorithm in FULL_OBJECT_ONLY else "COMPOSITE"


@dataclass
class Upload:
    """A multipart upload in progress."""

    key: str
    obj: NewObject
    algorithm: str
    parts: dict[int, tuple[Part, str]] = field(default_factory=dict)  # number: (part, etag)


def md5_etag(body: bytes | bytearray) -> str:
    return hashlib.md5(body).hexdigest()


def _flip(body: bytes | bytearray) -> bytes:
    """The same bytes with one bit flipped (the middle byte's lowest)."""
    damaged = bytearray(body)
    if damaged:
        damaged[len(damaged) // 2] ^= 1
    return bytes(damaged)


def _composite_checksum(algorithm: str, parts: list[Part]) -> str | None:
    """S3's checksum of a multipart object: of the part checksums (``-N``), or of the bytes."""
    if algorithm in FULL_OBJECT_ONLY:
        return checksum(b"".join(p.body for p in parts), algorithm)
    if any(p.checksum is None for p in parts):
        return None
    h = hasher(algorithm)
    for part in parts:
        h.update(base64.b64decode(part.checksum or ""))
    return f"{base64.b64encode(h.digest()).decode('ascii')}-{len(parts)}"


class MemoryStore:
    """One bucket in memory, behind the ``ObjectStore`` protocol."""

    def __init__(self, name: str, *, encrypted: bool = False,
                 clock: Callable[[], float] = time.time) -> None:
        self.name = name
        #: SSE-KMS / SSE-C-like: etags are random, not md5 digests, and writes say so.
        self.encrypted = encrypted
        self.missing = False  # the bucket is gone: every call raises NoSuchBucket
        self.clock = clock
        self.objects: dict[str, Stored] = {}
        self.uploads: dict[str, Upload] = {}
        self.calls: list[tuple[str, str]] = []
        self._faults: dict[str, list[BaseException]] = defaultdict(list)
        self._corrupt: dict[str, int] = defaultdict(int)
        self._before: dict[str, list[Callable[[], None]]] = defaultdict(list)

    # -- knobs ---------------------------------------------------------------------------

    def fail(self, op: str, error: BaseException, times: int = 1) -> None:
        """The next ``times`` calls of ``op`` raise ``error`` (after being recorded)."""
        self._faults[op] += [error] * times

    def corrupt(self, op: str, times: int = 1) -> None:
        """Flip a bit in what the next ``times`` calls of ``get``, ``put`` or ``upload_part``
        carry; a damaged write is stored and answered as if nothing happened."""
        self._corrupt[op] += times

    def before(self, op: str, action: Callable[[], None]) -> None:
        """Run ``action`` once, just before the next call of ``op`` does anything."""
        self._before[op].append(action)

    def count(self, op: str) -> int:
        """Calls of ``op`` so far."""
        return sum(1 for called, _ in self.calls if called == op)

    def seed(self, key: str, body: bytes, *, parts: list[int] | None = None,
             algorithm: str | None = None, metadata: dict[str, str] | None = None,
             headers: dict[str, Any] | None = None, tags: dict[str, str] | None = None,
             storage_class: str | None = None, last_modified: float | None = None) -> str:
        """Put an object directly, unconditionally; ``parts``: the sizes of a multipart
        object's parts, adding up to the body's length. Returns its etag."""
        stored_parts: tuple[Part, ...] | None = None
        if parts is not None:
            if sum(parts) != len(body):
                raise ValueError(f"parts {parts} do not add up to {len(body)} bytes")
            bounds = [sum(parts[:i]) for i in range(len(parts) + 1)]
            stored_parts = tuple(
                Part(body[a:b], checksum(body[a:b], algorithm) if algorithm else None)
                for a, b in zip(bounds, bounds[1:], strict=False))
        self.objects[key] = self._stored(
            body, NewObject(headers or {}, metadata or {}, tags or {}, storage_class),
            parts=stored_parts, algorithm=algorithm, last_modified=last_modified)
        return self.objects[key].etag

    def body(self, key: str) -> bytes:
        return self.objects[key].body

    # -- ObjectStore ---------------------------------------------------------------------

    async def check(self) -> None:
        self._enter("check", "")

    async def listing(self, prefix: str = "") -> AsyncIterator[Listed]:
        self._enter("listing", prefix)
        for key in sorted(k for k in self.objects if k.startswith(prefix)):
            if key in self.objects:  # deleted while the listing was read
                obj = self.objects[key]
                yield Listed(key, obj.etag, len(obj.body), obj.last_modified, obj.storage_class)

    async def head(self, key: str, part_number: int | None = None, *,
                   checksums: bool = False) -> Head | None:
        self._enter("head", key)
        obj = self.objects.get(key)
        if obj is None:
            return None
        head = self._head(obj)
        if checksums and obj.algorithm and obj.checksum:
            head = replace(head, checksums={obj.algorithm: obj.checksum})
        if part_number is None:
            return head
        return self._part_head(obj, head, part_number, checksums=checksums)

    async def get(self, key: str, *, if_match: str, first: int | None = None,
                  last: int | None = None) -> tuple[Head, bytearray]:
        self._enter("get", key)
        obj = self._existing(key)
        if obj.etag != if_match:
            raise errors.SourceChanged(f"{self.name} GetObject: PreconditionFailed: If-Match "
                                       f"{if_match}, object is {obj.etag}")
        if obj.storage_class in ARCHIVED_CLASSES:
            raise errors.Archived(f"{self.name} GetObject: InvalidObjectState: {key} is "
                                  f"{obj.storage_class}")
        head = self._head(obj)
        body = obj.body
        if first is not None:
            end = len(body) - 1 if last is None else min(last, len(body) - 1)
            body = body[first:end + 1]
            head = replace(head, length=len(body), ranged=True)
        if self._take_corrupt("get"):
            body = _flip(body)
        return head, bytearray(body)

    async def get_tags(self, key: str) -> dict[str, str]:
        self._enter("get_tags", key)
        return dict(self._existing(key).tags)

    async def put(self, key: str, body: bytes | bytearray, obj: NewObject, *, md5: str,
                  checksum: tuple[str, str] | None, replacing: str | None) -> Written:
        self._enter("put", key)
        data = self._arrived("put", body, md5, checksum)
        self._check_condition("PutObject", key, replacing)
        algorithm = checksum[0] if checksum else None
        stored = self._stored(data, obj, algorithm=algorithm)
        self.objects[key] = stored
        return Written(stored.etag, stored.checksum if checksum else None, self.encrypted)

    async def create_upload(self, key: str, obj: NewObject, algorithm: str) -> str:
        self._enter("create_upload", key)
        upload_id = uuid.uuid4().hex
        self.uploads[upload_id] = Upload(key, obj, algorithm)
        return upload_id

    async def upload_part(self, key: str, upload_id: str, number: int, body: bytes | bytearray, *,
                          md5: str, checksum: tuple[str, str] | None) -> Written:
        self._enter("upload_part", key)
        upload = self._upload(key, upload_id)
        data = self._arrived("upload_part", body, md5, checksum)
        stored_checksum = None
        if upload.algorithm != "none":
            stored_checksum = _checksum_of(data, upload.algorithm)
        etag = uuid.uuid4().hex if self.encrypted else md5_etag(data)
        upload.parts[number] = (Part(data, stored_checksum), etag)
        return Written(etag, stored_checksum if checksum else None, self.encrypted)

    async def complete_upload(self, key: str, upload_id: str, parts: list[tuple[int, Written]],
                              algorithm: str, *, replacing: str | None) -> Written:
        self._enter("complete_upload", key)
        upload = self._upload(key, upload_id)
        for number, written in parts:
            if number not in upload.parts or upload.parts[number][1] != written.etag:
                raise errors.PermanentError(f"{self.name} CompleteMultipartUpload: InvalidPart: "
                                            f"part {number}", reason="invalid_part")
        if replacing is not None and key not in self.objects:
            # AWS answers If-Match on an absent object 404 NoSuchKey (see testing.aws_faithful),
            # which S3Store translates to NoSuchKey.
            raise errors.NoSuchKey(f"{self.name} CompleteMultipartUpload: NoSuchKey: {key}")
        self._check_condition("CompleteMultipartUpload", key, replacing)
        chosen = [upload.parts[number][0] for number, _ in parts]
        stored = self._stored(b"".join(p.body for p in chosen), upload.obj, parts=tuple(chosen),
                              algorithm=None if upload.algorithm == "none" else upload.algorithm)
        self.objects[key] = stored
        del self.uploads[upload_id]
        return Written(stored.etag, None, self.encrypted)

    async def abort_upload(self, key: str, upload_id: str) -> None:
        self._enter("abort_upload", key)
        self.uploads.pop(upload_id, None)

    async def open_uploads(self) -> list[tuple[str, str]]:
        self._enter("open_uploads", "")
        return [(u.key, upload_id) for upload_id, u in self.uploads.items()]

    async def delete(self, key: str) -> None:
        self._enter("delete", key)
        self.objects.pop(key, None)

    # -- internals -----------------------------------------------------------------------

    def _enter(self, op: str, key: str) -> None:
        self.calls.append((op, key))
        while self._before[op]:
            self._before[op].pop(0)()
        if self.missing:
            raise errors.NoSuchBucket(f"{self.name}: bucket does not exist")
        if self._faults[op]:
            raise self._faults[op].pop(0)

    def _take_corrupt(self, op: str) -> bool:
        if self._corrupt[op] <= 0:
            return False
        self._corrupt[op] -= 1
        return True

    def _arrived(self, op: str, body: bytes | bytearray, md5: str,
                 sent: tuple[str, str] | None) -> bytes:
        """The bytes as stored: damaged without a word (``corrupt``), else checked as S3 does."""
        if self._take_corrupt(op):
            return _flip(body)
        if base64.b64encode(hashlib.md5(body).digest()).decode("ascii") != md5:
            raise errors.ChecksumMismatch(f"{self.name} {op}: BadDigest: Content-MD5")
        if sent is not None and checksum(body, sent[0]) != sent[1]:
            raise errors.ChecksumMismatch(f"{self.name} {op}: BadDigest: {sent[0]}")
        return bytes(body)

    def _check_condition(self, op: str, key: str, replacing: str | None) -> None:
        current = self.objects.get(key)
        if replacing is None and current is not None:
            raise errors.ReplicaChanged(f"{self.name} {op}: PreconditionFailed: If-None-Match: * "
                                        f"but {key} exists")
        if replacing is not None and (current is None or current.etag != replacing):
            raise errors.ReplicaChanged(f"{self.name} {op}: PreconditionFailed: If-Match "
                                        f"{replacing}")

    def _existing(self, key: str) -> Stored:
        obj = self.objects.get(key)
        if obj is None:
            raise errors.NoSuchKey(f"{self.name}: NoSuchKey: {key}")
        return obj

    def _upload(self, key: str, upload_id: str) -> Upload:
        upload = self.uploads.get(upload_id)
        if upload is None or upload.key != key:
            raise errors.NoSuchKey(f"{self.name}: NoSuchUpload: {upload_id}")
        return upload

    def _stored(self, body: bytes, obj: NewObject, *, parts: tuple[Part, ...] | None = None,
                algorithm: str | None = None, last_modified: float | None = None) -> Stored:
        if parts is None:
            etag = md5_etag(body)
            whole = _checksum_of(body, algorithm) if algorithm else None
        else:
            etag = composite_etag([hashlib.md5(p.body).digest() for p in parts])
            whole = _composite_checksum(algorithm, list(parts)) if algorithm else None
        if self.encrypted:
            etag = uuid.uuid4().hex + (f"-{len(parts)}" if parts is not None else "")
        headers = {k: v for k, v in obj.headers.items() if v is not None}
        return Stored(body, etag, self.clock() if last_modified is None else last_modified,
                      dict(obj.metadata), headers, dict(obj.tags), obj.storage_class, parts,
                      algorithm, whole)

    def _head(self, obj: Stored) -> Head:
        return Head(etag=obj.etag, size=len(obj.body), last_modified=obj.last_modified,
                    metadata=dict(obj.metadata),
                    headers={name: obj.headers.get(name) for name in CONTENT_HEADERS},
                    tag_count=len(obj.tags),
                    parts_count=len(obj.parts) if obj.parts is not None else None,
                    etag_is_md5=not self.encrypted, length=len(obj.body),
                    checksum_type=obj.checksum_type)

    def _part_head(self, obj: Stored, head: Head, number: int, *, checksums: bool) -> Head:
        """``HEAD ?partNumber=N``: that part's length and (composite objects) its checksum;
        part 1 of a single-part object is the whole object, as on S3."""
        parts = obj.parts or (Part(obj.body, obj.checksum),)
        if not 1 <= number <= len(parts):
            raise errors.PermanentError(f"{self.name} HeadObject: InvalidPartNumber: {number}",
                                        reason="invalid_part_number")
        part = parts[number - 1]
        own: dict[str, str] = {}
        if checksums and obj.algorithm:
            value = obj.checksum if obj.checksum_type == "FULL_OBJECT" else part.checksum
            own = {obj.algorithm: value} if value else {}
        return replace(head, length=len(part.body), ranged=True, checksums=own)


def _checksum_of(data: bytes, algorithm: str | None) -> str | None:
    return checksum(data, algorithm) if algorithm and algorithm != "none" else None


if TYPE_CHECKING:  # mypy proves the fake keeps up with the protocol
    _conforms: ObjectStore = MemoryStore("protocol check")
