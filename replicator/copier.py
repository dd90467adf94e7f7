"""The copier: read each source object once, write it to every region that needs it.

Small objects: one GET, one PUT per region. Large objects: multipart, each part
read once (a ranged GET pinned with If-Match to the planned etag) and uploaded
to every region, with a bounded window of parts in flight so memory does not
grow with object size. Every write is proven by ``verifier`` before it counts;
a failed region's upload is aborted and a corrupt replica deleted again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from . import errors
from .budget import ByteBudget
from .config import Replication
from .model import (
    MARKER_KEYS,
    META_CHECKSUM,
    META_MD5,
    META_SOURCE_ETAG,
    META_SOURCE_MTIME,
    META_SOURCE_VERSION,
    Change,
    Kind,
    Outcome,
    RegionResult,
    Written,
)
from .plan import Chunk, Plan, plan, stored_checksum
from .s3 import Head, NewObject, ObjectStore
from .verifier import Digest, ReadProof, check_written, composite_etag, digest

log = logging.getLogger(__name__)

#: Bodies this large are hashed on a worker thread (hashlib lets go of the GIL), so the
#: event loop keeps moving other bytes meanwhile.
THREAD_HASH_MIN = 2**20
#: Times a copy is planned again after a conditional write found the replica changed.
REPLANS = 2


class UploadLog(Protocol):
    """What the copier needs from the journal (``Journal.uploads``): multipart uploads open,
    so that a crash leaves none that a restart cannot abort."""

    async def record_upload(self, region: str, key: str, upload_id: str) -> None: ...
    async def forget_upload(self, region: str, upload_id: str) -> None: ...


def replica_is_current(change: Change, replica: Head | None) -> bool:
    """Whether a region already holds this change, or a newer one, intact."""
    if replica is None:
        return False
    marker = replica.metadata.get(META_SOURCE_ETAG)
    if marker == change.etag and replica.size == change.size:
        return replica_is_intact(replica, change.etag)
    return marker is not None and _marker_mtime(replica) > change.last_modified


def replica_is_intact(replica: Head, source_etag: str) -> bool:
    """Whether a replica holds the bytes it was written with (a copy corrupted on the way
    and left by a crash does not).

    A single-part replica's md5 etag must equal the source's md5 etag, or, for a source
    whose etag is no md5 (SSE-KMS, SSE-C), the md5 it was written with; an encrypted
    replica's etag is no md5, so its stored checksum must equal the one written. A
    multipart replica's completion was proven part by part.
    """
    if "-" in replica.etag:
        return True
    md5 = replica.metadata.get(META_MD5)
    if replica.etag_is_md5:
        return replica.etag == (md5 or source_etag)
    written = replica.metadata.get(META_CHECKSUM, "")
    algorithm, _, value = written.partition(":")
    return replica.checksums.get(algorithm, value) == value


def _marker_mtime(replica: Head) -> float:
    try:
        return float(replica.metadata.get(META_SOURCE_MTIME, "0"))
    except ValueError:
        return 0.0


def _failed(region: str, exc: BaseException, *, at_source: bool = False) -> RegionResult:
    reason = exc.reason if isinstance(exc, errors.ReplicatorError) else "network"
    return RegionResult(region, Outcome.FAILED, reason=reason, error=str(exc) or type(exc).__name__,
                        permanent=isinstance(exc, errors.PermanentError), at_source=at_source)


def _copied(region: str, nbytes: int, proven: bool) -> RegionResult:
    return RegionResult(region, Outcome.COPIED, nbytes=nbytes, unproven=not proven)


@dataclass
class _Upload:
    """One region's multipart upload of one object."""

    region: str
    store: ObjectStore
    upload_id: str
    replacing: str | None
    parts: dict[int, Written] = field(default_factory=dict)
    error: BaseException | None = None
    proven: bool = True


class Copier:
    """Applies one change to the regions that need it and proves every copy."""

    def __init__(self, source: ObjectStore, regions: dict[str, ObjectStore], options: Replication,
                 storage_classes: dict[str, str | None], journal: UploadLog) -> None:
        self.source = source
        self.regions = regions
        self.options = options
        self.storage_classes = storage_classes
        self.journal = journal
        self.budget = ByteBudget(options.max_bytes_in_flight)

    async def apply(self, change: Change, regions: list[str],
                    probe: set[str] | None = None) -> list[RegionResult]:
        """Apply a change; ``probe`` are the regions whose replica must be looked at first
        (all, by default). A put to a region not probed costs no HEAD, and is written
        only where no replica exists (a 412 there means one does: it is probed then)."""
        if change.kind is Kind.DELETE:
            return await self._delete(change, regions)
        results = await self._put(change, regions, set(regions) if probe is None else probe)
        for _ in range(REPLANS):
            changed = [r.region for r in results if r.reason == errors.ReplicaChanged.reason]
            if not changed:
                break
            log.info("key=%r: the replica changed in %s since it was looked at; planning again",
                     change.key, ",".join(changed))
            again = {r.region: r for r in await self._put(change, changed, set(changed))}
            results = [again.get(r.region, r) for r in results]
        return results

    async def _each(self, regions: list[str],
                    fn: Callable[[str], Awaitable[RegionResult]]) -> list[RegionResult]:
        """Run ``fn`` for every region concurrently; one region's failure is only its own."""
        async def guarded(region: str) -> RegionResult:
            try:
                return await fn(region)
            except (errors.ReplicatorError, OSError) as exc:
                return _failed(region, exc)
        return list(await asyncio.gather(*(guarded(r) for r in regions)))

    # -- puts ------------------------------------------------------------------

    async def _put(self, change: Change, regions: list[str], probe: set[str]) -> list[RegionResult]:
        replacing: dict[str, str | None] = dict.fromkeys(regions)

        async def look(region: str) -> RegionResult:
            if region in probe:
                replica = await self.regions[region].head(change.key, checksums=True)
                if replica_is_current(change, replica):
                    return RegionResult(region, Outcome.SKIPPED)
                replacing[region] = replica.etag if replica is not None else None
            return RegionResult(region, Outcome.COPIED)  # provisional: needs a copy

        probed = await self._each(regions, look)
        targets = {r.region: replacing[r.region] for r in probed if r.outcome is Outcome.COPIED}
        results = {r.region: r for r in probed if r.outcome is not Outcome.COPIED}
        if targets:
            try:
                if change.multipart_etag or change.size > self.options.multipart_threshold:
                    copied = await self._copy_multipart(change, targets)
                else:
                    copied = await self._copy_single(change, targets)
            except errors.ReplicatorError as exc:  # the source read failed: every target fails
                copied = [_failed(r, exc, at_source=True) for r in targets]
            results.update((r.region, r) for r in copied)
        return [results[r] for r in regions]

    def _new_object(self, change: Change, head: Head, tags: dict[str, str], region: str,
                    sent: Digest | None = None) -> NewObject:
        metadata = {k: v for k, v in head.metadata.items() if k not in MARKER_KEYS}
        metadata[META_SOURCE_ETAG] = change.etag
        metadata[META_SOURCE_MTIME] = f"{head.last_modified:.3f}"
        if head.version_id and head.version_id != "null":
            metadata[META_SOURCE_VERSION] = head.version_id
        if sent is not None:
            if not head.etag_is_md5:  # else the source etag is the md5 the replica must have
                metadata[META_MD5] = sent.md5_hex
            if sent.checksum is not None:
                metadata[META_CHECKSUM] = f"{sent.algorithm}:{sent.checksum}"
        return NewObject(head.headers, metadata, tags, self.storage_classes.get(region))

    async def _read_tags(self, change: Change, head: Head) -> dict[str, str]:
        return await self.source.get_tags(change.key) if head.tag_count else {}

    async def _copy_single(self, change: Change, targets: dict[str, str | None]) -> list[RegionResult]:
        async with self.budget.hold(change.size):
            return await self._copy_body(change, targets)

    async def _copy_body(self, change: Change, targets: dict[str, str | None]) -> list[RegionResult]:
        head, body = await self.source.get(change.key, if_match=change.etag)
        whole = None
        if not head.etag_is_md5:  # encrypted: only a stored checksum can prove the read
            stored = await self.source.head(change.key, checksums=True)
            whole = stored_checksum(stored) if stored is not None else None
        proof = ReadProof(change.key, change.etag, head.etag_is_md5, None, whole)
        sent = await self._digest(body, proof)
        proof.finish(len(body))
        tags = await self._read_tags(change, head)

        async def write(region: str) -> RegionResult:
            store = self.regions[region]
            obj = self._new_object(change, head, tags, region, sent)
            written = await store.put(change.key, body, obj, md5=sent.md5_b64, checksum=sent.header,
                                      replacing=targets[region])
            proven = await self._prove(store, change.key, sent, written)
            return _copied(region, len(body), proven and proof.proven)
        return await self._each(list(targets), write)

    async def _digest(self, body: bytearray, proof: ReadProof | None = None) -> Digest:
        """The body's checksums; ``proof`` (the read's) is fed it too."""
        def run() -> Digest:
            sent = digest(body, self.options.checksum_algorithm)
            if proof is not None:
                proof.feed(body, sent.md5)
            return sent
        return await asyncio.to_thread(run) if len(body) >= THREAD_HASH_MIN else run()

    async def _prove(self, store: ObjectStore, key: str, sent: Digest, written: Written) -> bool:
        """Verify a whole-object write; a replica whose stored bytes are shown to differ is
        deleted, never left looking good (an encrypted one's etag alone shows nothing)."""
        try:
            return check_written(f"{key} to {store.name}", sent, written)
        except errors.ChecksumMismatch:
            with contextlib.suppress(errors.ReplicatorError):
                await store.delete(key)
            raise

    async def _copy_multipart(self, change: Change,
                              targets: dict[str, str | None]) -> list[RegionResult]:
        planned = await plan(self.source, change, self.options.part_size)
        if not planned.mirrored and change.multipart_etag:
            log.warning("%s: the source's parts cannot be mirrored; copying in parts of our own",
                        change.key)
        chunks = planned.chunks
        first_taken = await self.budget.acquire(chunks[0].size)
        try:
            head, first = await self._read(change, chunks[0])
            tags = await self._read_tags(change, head)
        except BaseException:
            await self.budget.release(first_taken)
            raise
        uploads: list[_Upload] = []
        results: dict[str, RegionResult] = {}

        async def start(region: str) -> RegionResult:
            store = self.regions[region]
            obj = self._new_object(change, head, tags, region)
            upload_id = await store.create_upload(change.key, obj, self.options.checksum_algorithm)
            await self.journal.record_upload(region, change.key, upload_id)
            uploads.append(_Upload(region, store, upload_id, targets[region]))
            return RegionResult(region, Outcome.COPIED)

        try:
            results.update((r.region, r) for r in await self._each(list(targets), start)
                           if not r.done)
        except BaseException:
            await self.budget.release(first_taken)
            raise
        handed = [(first, first_taken)]
        del first  # _stream_parts owns part 1 now; a reference here would outlive its budget
        try:
            part_md5s = await self._stream_parts(change, uploads, handed, planned)
            planned.proof.finish(change.size)
            expected = composite_etag(part_md5s)
            for done in await asyncio.gather(*(self._complete(change, u, expected, planned.proof)
                                               for u in uploads)):
                results[done.region] = done
        finally:
            await self._abort_unfinished(change.key, uploads)
        return [results[r] for r in targets]

    async def _read(self, change: Change, part: Chunk) -> tuple[Head, bytearray]:
        head, data = await self.source.get(change.key, if_match=change.etag, first=part.first,
                                           last=part.last)
        if len(data) != part.size:
            raise errors.TransientError(f"{change.key}: short read of part {part.number}")
        return head, data

    async def _stream_parts(self, change: Change, uploads: list[_Upload],
                            first: list[tuple[bytearray, int]], planned: Plan) -> list[bytes]:
        """Read every part once, in order, and send it to every live upload.

        ``first`` holds part 1, already read, with the budget it holds; it is
        taken out, so that only the task sending a part keeps it. Every part read
        is fed to the plan's proof. Returns the md5 of each part sent.
        """
        window = asyncio.Semaphore(self.options.parts_in_flight)
        part_md5s: list[bytes] = []
        sending: list[asyncio.Task[None]] = []

        async def send(number: int, body: bytearray, sent: Digest, taken: int) -> None:
            try:
                await asyncio.gather(*(self._send_part(change.key, u, number, body, sent)
                                       for u in uploads if u.error is None))
            finally:
                await self.budget.release(taken)
                window.release()

        try:
            for part in planned.chunks:
                await window.acquire()
                if part.number == 1:
                    body, taken = first.pop()
                else:
                    taken = await self.budget.acquire(part.size)
                    try:
                        body = (await self._read(change, part))[1]
                    except BaseException:
                        await self.budget.release(taken)
                        window.release()
                        raise
                sent = await self._digest(body, planned.proof)
                part_md5s.append(sent.md5)
                sending.append(asyncio.create_task(send(part.number, body, sent, taken)))
                del body  # the task owns the part now: it must not outlive its budget here
            await asyncio.gather(*sending)
        finally:
            for task in sending:
                task.cancel()
            await asyncio.gather(*sending, return_exceptions=True)
        return part_md5s

    async def _send_part(self, key: str, upload: _Upload, number: int, body: bytearray,
                         sent: Digest) -> None:
        try:
            written = await upload.store.upload_part(key, upload.upload_id, number, body,
                                                     md5=sent.md5_b64, checksum=sent.header)
            upload.proven &= check_written(f"{key} part {number} to {upload.region}", sent, written)
            upload.parts[number] = written
        except (errors.ReplicatorError, OSError) as exc:
            upload.error = upload.error or exc

    async def _complete(self, change: Change, upload: _Upload, expected: str,
                        proof: ReadProof) -> RegionResult:
        if upload.error is not None:
            return _failed(upload.region, upload.error)
        try:
            written = await upload.store.complete_upload(
                change.key, upload.upload_id, sorted(upload.parts.items()),
                self.options.checksum_algorithm, replacing=upload.replacing)
        except errors.ReplicatorError as exc:
            return _failed(upload.region, exc)
        await self.journal.forget_upload(upload.region, upload.upload_id)
        upload.upload_id = ""
        if not written.encrypted and written.etag != expected:
            with contextlib.suppress(errors.ReplicatorError):
                await upload.store.delete(change.key)
            return _failed(upload.region, errors.ChecksumMismatch(
                f"{change.key} to {upload.region}: completed etag {written.etag}, expected {expected}"))
        return _copied(upload.region, change.size, upload.proven and proof.proven)

    async def _abort_unfinished(self, key: str, uploads: list[_Upload]) -> None:
        for upload in uploads:
            if upload.upload_id:
                with contextlib.suppress(errors.ReplicatorError):
                    await upload.store.abort_upload(key, upload.upload_id)
                    await self.journal.forget_upload(upload.region, upload.upload_id)

    # -- deletes ---------------------------------------------------------------

    async def _delete(self, change: Change, regions: list[str]) -> list[RegionResult]:
        if await self.source.head(change.key) is not None:
            # Recreated since the listing saw it gone: never leave it deleted.
            return [RegionResult(r, Outcome.SUPERSEDED, reason="source_changed") for r in regions]

        async def remove(region: str) -> RegionResult:
            store = self.regions[region]
            replica = await store.head(change.key)
            if replica is not None and replica.metadata.get(META_SOURCE_ETAG) and \
                    _marker_mtime(replica) > change.last_modified:
                return RegionResult(region, Outcome.SKIPPED)  # newer than the delete
            if replica is not None:
                await store.delete(change.key)
            return RegionResult(region, Outcome.DELETED)
        return await self._each(regions, remove)
