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
import hashlib
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from . import errors
from .budget import ByteBudget
from .config import Replication
from .journal import Journal
from .model import (
    MARKER_KEYS,
    META_SOURCE_ETAG,
    META_SOURCE_MTIME,
    META_SOURCE_VERSION,
    Change,
    Kind,
    Outcome,
    RegionResult,
)
from .s3 import Head, NewObject, ObjectStore, Written
from .verifier import Digest, check_source, check_written, composite_etag, digest

log = logging.getLogger(__name__)

#: Largest source part we mirror part-for-part (to reproduce the source's etag exactly).
MAX_MIRRORED_PART = 256 * 2**20
#: Bodies this large are hashed on a worker thread (hashlib lets go of the GIL), so the
#: event loop keeps moving other bytes meanwhile.
THREAD_HASH_MIN = 2**20


def replica_is_current(change: Change, replica: Head | None) -> bool:
    """Whether a region already holds this change, or a newer one, intact."""
    if replica is None:
        return False
    marker = replica.metadata.get(META_SOURCE_ETAG)
    if marker == change.etag and replica.size == change.size:
        # A single-part replica of a single-part source must carry the source's
        # md5 as its own etag; anything else is a corrupted copy left by a crash.
        return replica.etag == change.etag or "-" in replica.etag
    return marker is not None and _marker_mtime(replica) > change.last_modified


def _marker_mtime(replica: Head) -> float:
    try:
        return float(replica.metadata.get(META_SOURCE_MTIME, "0"))
    except ValueError:
        return 0.0


def _failed(region: str, exc: BaseException, *, at_source: bool = False) -> RegionResult:
    reason = exc.reason if isinstance(exc, errors.ReplicatorError) else "network"
    return RegionResult(region, Outcome.FAILED, reason=reason, error=str(exc) or type(exc).__name__,
                        permanent=isinstance(exc, errors.PermanentError), at_source=at_source)


@dataclass
class _Upload:
    """One region's multipart upload of one object."""

    region: str
    store: ObjectStore
    upload_id: str
    parts: dict[int, Written] = field(default_factory=dict)
    error: BaseException | None = None


class Copier:
    """Applies one change to the regions that need it and proves every copy."""

    def __init__(self, source: ObjectStore, regions: dict[str, ObjectStore], options: Replication,
                 storage_classes: dict[str, str | None], journal: Journal) -> None:
        self.source = source
        self.regions = regions
        self.options = options
        self.storage_classes = storage_classes
        self.journal = journal
        self.budget = ByteBudget(options.max_bytes_in_flight)

    async def apply(self, change: Change, regions: list[str],
                    probe: set[str] | None = None) -> list[RegionResult]:
        """Apply a change; ``probe`` are the regions whose replica must be looked at first
        (all, by default). A put to a region not probed costs no HEAD."""
        if change.kind is Kind.DELETE:
            return await self._delete(change, regions)
        return await self._put(change, regions, set(regions) if probe is None else probe)

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
        async def look(region: str) -> RegionResult:
            if region in probe and replica_is_current(
                    change, await self.regions[region].head(change.key)):
                return RegionResult(region, Outcome.SKIPPED)
            return RegionResult(region, Outcome.COPIED)  # provisional: needs a copy

        probed = await self._each(regions, look)
        targets = [r.region for r in probed if r.outcome is Outcome.COPIED]
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

    def _new_object(self, change: Change, head: Head, tags: dict[str, str], region: str) -> NewObject:
        metadata = {k: v for k, v in head.metadata.items() if k not in MARKER_KEYS}
        metadata[META_SOURCE_ETAG] = change.etag
        metadata[META_SOURCE_MTIME] = f"{head.last_modified:.3f}"
        if head.version_id and head.version_id != "null":
            metadata[META_SOURCE_VERSION] = head.version_id
        return NewObject(head.headers, metadata, tags, self.storage_classes.get(region))

    async def _read_tags(self, change: Change, head: Head) -> dict[str, str]:
        return await self.source.get_tags(change.key) if head.tag_count else {}

    async def _copy_single(self, change: Change, targets: list[str]) -> list[RegionResult]:
        async with self.budget.hold(change.size):
            return await self._copy_body(change, targets)

    async def _copy_body(self, change: Change, targets: list[str]) -> list[RegionResult]:
        head, body = await self.source.get(change.key, if_match=change.etag)
        sent = await self._digest(body)
        if head.etag_is_md5:
            check_source(f"{change.key} from source", change.etag, sent.md5_hex)
        tags = await self._read_tags(change, head)

        async def write(region: str) -> RegionResult:
            store = self.regions[region]
            obj = self._new_object(change, head, tags, region)
            written = await store.put(change.key, body, obj, md5=sent.md5_b64, checksum=sent.header)
            await self._prove(store, change.key, sent, written)
            return RegionResult(region, Outcome.COPIED, nbytes=len(body))
        return await self._each(targets, write)

    async def _digest(self, body: bytearray,
                      also: Callable[[bytearray], object] | None = None) -> Digest:
        """The body's checksums; ``also`` (a running hash's ``update``) is fed it too."""
        def run() -> Digest:
            if also is not None:
                also(body)
            return digest(body, self.options.checksum_algorithm)
        return await asyncio.to_thread(run) if len(body) >= THREAD_HASH_MIN else run()

    async def _prove(self, store: ObjectStore, key: str, sent: Digest, written: Written) -> None:
        """Verify a whole-object write; a replica that fails is deleted, never left looking good."""
        try:
            check_written(f"{key} to {store.name}", sent, written)
        except errors.ChecksumMismatch:
            with contextlib.suppress(errors.ReplicatorError):
                await store.delete(key)
            raise

    async def _part_size(self, change: Change) -> tuple[int, bool]:
        """Part size for this object, and whether the source's composite etag can be checked.

        A multipart source is mirrored part for part (the size of its first part),
        so the replica's etag equals the source's and the bytes read can be proven.
        """
        if change.multipart_etag:
            first = await self.source.head(change.key, part_number=1)
            if first is None:
                raise errors.NoSuchKey(f"{change.key}: gone from the source")
            if 0 < first.size <= MAX_MIRRORED_PART:
                return first.size, True
            log.warning("%s: source parts of %d bytes are too large to mirror; "
                        "verifying the transfer only", change.key, first.size)
        return self.options.part_size, False

    async def _copy_multipart(self, change: Change, targets: list[str]) -> list[RegionResult]:
        part_size, mirrored = await self._part_size(change)
        count = max(1, math.ceil(change.size / part_size))
        first_taken = await self.budget.acquire(part_size)
        try:
            head, first = await self._read_part(change, 1, part_size)
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
            uploads.append(_Upload(region, store, upload_id))
            return RegionResult(region, Outcome.COPIED)

        try:
            results.update((r.region, r) for r in await self._each(targets, start) if not r.done)
        except BaseException:
            await self.budget.release(first_taken)
            raise
        handed = [(first, first_taken)]
        del first  # _stream_parts owns part 1 now; a reference here would outlive its budget
        try:
            part_md5s, whole = await self._stream_parts(change, uploads, handed, count, part_size)
            if mirrored:
                check_source(f"{change.key} from source", change.etag, composite_etag(part_md5s))
            elif not change.multipart_etag and head.etag_is_md5:
                check_source(f"{change.key} from source", change.etag, whole.hex())
            expected = composite_etag(part_md5s)
            for done in await asyncio.gather(*(self._complete(change, u, expected) for u in uploads)):
                results[done.region] = done
        finally:
            await self._abort_unfinished(change.key, uploads)
        return [results[r] for r in targets]

    async def _read_part(self, change: Change, number: int, part_size: int) -> tuple[Head, bytearray]:
        first = (number - 1) * part_size
        last = min(first + part_size, change.size) - 1
        head, data = await self.source.get(change.key, if_match=change.etag, first=first, last=last)
        if len(data) != last - first + 1:
            raise errors.TransientError(f"{change.key}: short read of part {number}")
        return head, data

    async def _stream_parts(self, change: Change, uploads: list[_Upload],
                            first: list[tuple[bytearray, int]], count: int,
                            part_size: int) -> tuple[list[bytes], bytes]:
        """Read every part once, in order, and send it to every live upload.

        ``first`` holds part 1, already read, with the budget it holds; it is
        taken out, so that only the task sending a part keeps it. Returns the
        md5 of each part and the md5 of the whole object.
        """
        window = asyncio.Semaphore(self.options.parts_in_flight)
        whole = hashlib.md5()
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
            for number in range(1, count + 1):
                await window.acquire()
                if number == 1:
                    body, taken = first.pop()
                else:
                    taken = await self.budget.acquire(part_size)
                    try:
                        body = (await self._read_part(change, number, part_size))[1]
                    except BaseException:
                        await self.budget.release(taken)
                        window.release()
                        raise
                sent = await self._digest(body, whole.update)
                part_md5s.append(sent.md5)
                sending.append(asyncio.create_task(send(number, body, sent, taken)))
                del body  # the task owns the part now: it must not outlive its budget here
            await asyncio.gather(*sending)
        finally:
            for task in sending:
                task.cancel()
            await asyncio.gather(*sending, return_exceptions=True)
        return part_md5s, whole.digest()

    async def _send_part(self, key: str, upload: _Upload, number: int, body: bytearray,
                         sent: Digest) -> None:
        try:
            written = await upload.store.upload_part(key, upload.upload_id, number, body,
                                                     md5=sent.md5_b64, checksum=sent.header)
            check_written(f"{key} part {number} to {upload.region}", sent, written)
            upload.parts[number] = written
        except (errors.ReplicatorError, OSError) as exc:
            upload.error = upload.error or exc

    async def _complete(self, change: Change, upload: _Upload, expected: str) -> RegionResult:
        if upload.error is not None:
            return _failed(upload.region, upload.error)
        try:
            written = await upload.store.complete_upload(
                change.key, upload.upload_id, sorted(upload.parts.items()),
                self.options.checksum_algorithm)
        except errors.ReplicatorError as exc:
            return _failed(upload.region, exc)
        await self.journal.forget_upload(upload.region, upload.upload_id)
        upload.upload_id = ""
        if written.etag != expected:
            with contextlib.suppress(errors.ReplicatorError):
                await upload.store.delete(change.key)
            return _failed(upload.region, errors.ChecksumMismatch(
                f"{change.key} to {upload.region}: completed etag {written.etag}, expected {expected}"))
        return RegionResult(upload.region, Outcome.COPIED, nbytes=change.size)

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
