"""The S3 adapter: the one place that talks to botocore.

Everything the pipeline reads or writes goes through ``ObjectStore``, a narrow
protocol, so the data path can move to a faster client later without touching
the stages. botocore exceptions are translated into ``replicator.errors`` here
and nowhere else; per-request retries (tenacity) also live here.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, Protocol, TypeVar
from urllib.parse import urlencode

import aiohttp
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from . import errors
from .body import BodyReader, read_exactly
from .model import Listed as Listed  # re-exported: the value types live in model
from .model import Written as Written
from .retry import RequestRetry

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Content headers preserved on every replica (GetObject name == PutObject name).
CONTENT_HEADERS = ("ContentType", "CacheControl", "ContentDisposition",
                   "ContentEncoding", "ContentLanguage", "Expires")
CHECKSUM_PARAM = {"sha256": "ChecksumSHA256", "sha1": "ChecksumSHA1", "crc32": "ChecksumCRC32",
                  "crc32c": "ChecksumCRC32C", "crc64nvme": "ChecksumCRC64NVME"}


@dataclass(frozen=True, slots=True)
class Head:
    """What a HEAD or GET says about an object, minus the body."""

    etag: str
    size: int
    last_modified: float
    version_id: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    headers: dict[str, Any] = field(default_factory=dict)
    tag_count: int = 0
    parts_count: int | None = None
    etag_is_md5: bool = True  # false under SSE-KMS / SSE-C, whose etags are not digests
    #: Bytes this answer covers: the whole object, or one part of a ``partNumber`` read.
    length: int = 0
    #: Checksums the store holds (``ChecksumMode=ENABLED``), by algorithm; a value ending
    #: in ``-N`` is a composite of N part checksums, not one of the bytes.
    checksums: dict[str, str] = field(default_factory=dict)
    checksum_type: str | None = None  # COMPOSITE or FULL_OBJECT, for a multipart object
    ranged: bool = False  # the answer had a Content-Range: it covers ``length`` bytes of ``size``


@dataclass(frozen=True, slots=True)
class NewObject:
    """Everything a replica is created with, apart from its bytes."""

    headers: dict[str, Any]
    metadata: dict[str, str]
    tags: dict[str, str]
    storage_class: str | None = None


class ObjectStore(Protocol):
    """The operations replication needs from one bucket."""

    name: str

    async def check(self) -> None: ...
    def listing(self, prefix: str = "") -> AsyncIterator[Listed]: ...
    async def head(self, key: str, part_number: int | None = None, *,
                   checksums: bool = False) -> Head | None: ...
    async def get(self, key: str, *, if_match: str, first: int | None = None,
                  last: int | None = None) -> tuple[Head, bytearray]: ...
    async def get_tags(self, key: str) -> dict[str, str]: ...
    async def put(self, key: str, body: bytes | bytearray, obj: NewObject, *, md5: str,
                  checksum: tuple[str, str] | None, replacing: str | None) -> Written: ...
    async def create_upload(self, key: str, obj: NewObject, algorithm: str) -> str: ...
    async def upload_part(self, key: str, upload_id: str, number: int, body: bytes | bytearray, *,
                          md5: str, checksum: tuple[str, str] | None) -> Written: ...
    async def complete_upload(self, key: str, upload_id: str, parts: list[tuple[int, Written]],
                              algorithm: str, *, replacing: str | None) -> Written: ...
    async def abort_upload(self, key: str, upload_id: str) -> None: ...
    async def open_uploads(self) -> list[tuple[str, str]]: ...
    async def delete(self, key: str) -> None: ...


def _etag(value: str) -> str:
    return value.strip('"')


def _ts(value: datetime) -> float:
    return value.timestamp()


class S3Store:
    """``ObjectStore`` on one bucket through a shared aiobotocore client."""

    def __init__(self, name: str, client: Any, bucket: str, retry: RequestRetry, *,
                 list_page: int = 1000, read_args: dict[str, Any] | None = None,
                 write_args: dict[str, Any] | None = None) -> None:
        self.name = name
        self.bucket = bucket
        self._client = client
        self._retry = retry
        self._list_page = list_page
        #: Sent with every read (an SSE-C key) and every object created (SSE settings).
        self._read_args = read_args or {}
        self._write_args = write_args or {}

    async def _call(self, op: str, fn: Callable[[], Awaitable[T]]) -> T:
        async def attempt() -> T:
            with translated(self.name, op):
                return await fn()
        return await self._retry.call(attempt, name=self.name, op=op)

    async def check(self) -> None:
        """Is the bucket there and ours to use?"""
        try:
            await self._call("HeadBucket", lambda: self._client.head_bucket(Bucket=self.bucket))
        except errors.NoSuchKey:  # HeadBucket answers a bare 404
            raise errors.NoSuchBucket(f"{self.name}: bucket {self.bucket} does not exist") from None

    async def listing(self, prefix: str = "") -> AsyncIterator[Listed]:
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix,
                                      "MaxKeys": self._list_page}
            if token:
                kwargs["ContinuationToken"] = token
            page = await self._call("ListObjectsV2",
                                    partial(self._client.list_objects_v2, **kwargs))
            for item in page.get("Contents", ()):
                yield Listed(item["Key"], _etag(item["ETag"]), item["Size"],
                             _ts(item["LastModified"]), item.get("StorageClass"))
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return

    async def head(self, key: str, part_number: int | None = None, *,
                   checksums: bool = False) -> Head | None:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key, **self._read_args}
        if part_number is not None:
            kwargs["PartNumber"] = part_number
        if checksums:
            kwargs["ChecksumMode"] = "ENABLED"
        try:
            resp = await self._call("HeadObject", lambda: self._client.head_object(**kwargs))
        except errors.NoSuchKey:
            return None
        return _head(resp)

    async def get(self, key: str, *, if_match: str, first: int | None = None,
                  last: int | None = None) -> tuple[Head, bytearray]:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key, "IfMatch": f'"{if_match}"',
                                  **self._read_args}
        if first is not None:
            kwargs["Range"] = f"bytes={first}-{last}"

        async def fetch() -> tuple[Head, bytearray]:
            resp = await self._client.get_object(**kwargs)
            async with resp["Body"] as body:
                data = await read_exactly(body, resp["ContentLength"])
            return _head(resp), data
        return await self._call("GetObject", fetch)

    async def get_tags(self, key: str) -> dict[str, str]:
        resp = await self._call("GetObjectTagging",
                                lambda: self._client.get_object_tagging(Bucket=self.bucket, Key=key))
        return {t["Key"]: t["Value"] for t in resp.get("TagSet", ())}

    def _create_args(self, key: str, obj: NewObject) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key, "Metadata": obj.metadata,
                                  **self._write_args}
        kwargs.update({k: v for k, v in obj.headers.items() if v is not None})
        if obj.tags:
            kwargs["Tagging"] = urlencode(obj.tags)
        if obj.storage_class:
            kwargs["StorageClass"] = obj.storage_class
        return kwargs

    async def put(self, key: str, body: bytes | bytearray, obj: NewObject, *, md5: str,
                  checksum: tuple[str, str] | None, replacing: str | None) -> Written:
        """Write a whole object, only over the replica ``replacing`` (an etag), or only
        where there is none (``replacing=None``): an older write never lands on a newer one."""
        kwargs = self._create_args(key, obj)
        kwargs.update(ContentMD5=md5, **_checksum_arg(checksum), **_condition(replacing))
        async def send() -> Any:
            with BodyReader(body) as stream:  # a stream per attempt
                return await self._client.put_object(Body=stream, **kwargs)
        return _written(await self._call("PutObject", send), checksum and checksum[0])

    async def create_upload(self, key: str, obj: NewObject, algorithm: str) -> str:
        kwargs = self._create_args(key, obj)
        if algorithm != "none":
            kwargs["ChecksumAlgorithm"] = algorithm.upper()
        if algorithm == "crc64nvme":
            kwargs["ChecksumType"] = "FULL_OBJECT"  # the only kind S3 has for CRC64NVME
        resp = await self._call("CreateMultipartUpload",
                                lambda: self._client.create_multipart_upload(**kwargs))
        return str(resp["UploadId"])

    async def upload_part(self, key: str, upload_id: str, number: int, body: bytes | bytearray, *,
                          md5: str, checksum: tuple[str, str] | None) -> Written:
        async def send() -> Any:
            with BodyReader(body) as stream:  # a stream per attempt
                return await self._client.upload_part(
                    Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number,
                    Body=stream, ContentMD5=md5, **_checksum_arg(checksum))
        return _written(await self._call("UploadPart", send), checksum and checksum[0])

    async def complete_upload(self, key: str, upload_id: str, parts: list[tuple[int, Written]],
                              algorithm: str, *, replacing: str | None) -> Written:
        listed = []
        for number, written in parts:
            entry: dict[str, Any] = {"PartNumber": number, "ETag": f'"{written.etag}"'}
            if written.checksum:
                entry[CHECKSUM_PARAM[algorithm]] = written.checksum
            listed.append(entry)
        resp = await self._call("CompleteMultipartUpload", lambda: self._client.complete_multipart_upload(
            Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": listed},
            **_condition(replacing)))
        return _written(resp, None)

    async def abort_upload(self, key: str, upload_id: str) -> None:
        with contextlib.suppress(errors.NoSuchKey):
            await self._call("AbortMultipartUpload", lambda: self._client.abort_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id))

    async def open_uploads(self) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        while True:
            page = await self._call("ListMultipartUploads",
                                    lambda: self._client.list_multipart_uploads(**kwargs))
            found += [(u["Key"], u["UploadId"]) for u in page.get("Uploads", ())]
            if not page.get("IsTruncated"):
                return found
            kwargs.update(KeyMarker=page["NextKeyMarker"], UploadIdMarker=page["NextUploadIdMarker"])

    async def delete(self, key: str) -> None:
        await self._call("DeleteObject", lambda: self._client.delete_object(Bucket=self.bucket, Key=key))


def _checksum_arg(checksum: tuple[str, str] | None) -> dict[str, str]:
    return {CHECKSUM_PARAM[checksum[0]]: checksum[1]} if checksum else {}


def _condition(replacing: str | None) -> dict[str, str]:
    """S3's conditional write: over exactly that replica, or only where none exists."""
    return {"IfMatch": f'"{replacing}"'} if replacing else {"IfNoneMatch": "*"}


def _encrypted(resp: dict[str, Any]) -> bool:
    """SSE-KMS (and DSSE-KMS) and SSE-C objects have etags that are not md5 digests."""
    return str(resp.get("ServerSideEncryption", "")).startswith("aws:kms") or \
        bool(resp.get("SSECustomerAlgorithm"))


def _written(resp: dict[str, Any], algorithm: str | None) -> Written:
    checksum = resp.get(CHECKSUM_PARAM[algorithm]) if algorithm else None
    return Written(_etag(resp["ETag"]), checksum, _encrypted(resp))


def _head(resp: dict[str, Any]) -> Head:
    headers = {name: resp.get(name) for name in CONTENT_HEADERS}
    if resp.get("ExpiresString") and headers["Expires"] is None:
        headers["Expires"] = resp["ExpiresString"]
    length = size = resp["ContentLength"]
    if "ContentRange" in resp:  # a range, or one part of a partNumber read
        size = int(resp["ContentRange"].rpartition("/")[2])
    return Head(
        etag=_etag(resp["ETag"]), size=size, last_modified=_ts(resp["LastModified"]),
        version_id=resp.get("VersionId"), metadata=dict(resp.get("Metadata", {})),
        headers=headers, tag_count=int(resp.get("TagCount", 0) or 0),
        parts_count=resp.get("PartsCount"), etag_is_md5=not _encrypted(resp), length=length,
        checksums={alg: resp[param] for alg, param in CHECKSUM_PARAM.items() if resp.get(param)},
        checksum_type=resp.get("ChecksumType"), ranged="ContentRange" in resp)


_CODES: dict[str, type[errors.ReplicatorError]] = {
    "NoSuchBucket": errors.NoSuchBucket,
    "NoSuchUpload": errors.NoSuchKey,  # aborting one already gone; rclone's "no uploads"
    "NoSuchKey": errors.NoSuchKey,
    "404": errors.NoSuchKey,
    "NotFound": errors.NoSuchKey,
    "AccessDenied": errors.AccessDenied,
    "403": errors.AccessDenied,
    "InvalidAccessKeyId": errors.AccessDenied,
    "SignatureDoesNotMatch": errors.AccessDenied,
    "ExpiredToken": errors.AccessDenied,
    "InvalidToken": errors.AccessDenied,
    "AWS.SimpleQueueService.NonExistentQueue": errors.NoSuchQueue,
    "QueueDoesNotExist": errors.NoSuchQueue,
    "PreconditionFailed": errors.SourceChanged,
    "412": errors.SourceChanged,
    "InvalidObjectState": errors.Archived,
    "BadDigest": errors.ChecksumMismatch,
    "InvalidDigest": errors.ChecksumMismatch,
    "XAmzContentSHA256Mismatch": errors.ChecksumMismatch,
}
#: Writes that carry If-Match / If-None-Match: a 412 there means the replica moved, not the source.
_CONDITIONAL_WRITES = frozenset({"PutObject", "CompleteMultipartUpload"})
_THROTTLE_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded",
                   "TooManyRequests", "503", "429"}


@contextlib.contextmanager
def translated(store: str, op: str) -> Any:
    """Turn whatever botocore or aiohttp raises into a ``ReplicatorError``."""
    try:
        yield
    except ClientError as exc:
        raise _from_client_error(store, op, exc) from exc
    except (NoCredentialsError, PartialCredentialsError) as exc:
        raise errors.AccessDenied(f"{store} {op}: no usable credentials: {exc}") from exc
    except (BotoConnectionError, HTTPClientError, aiohttp.ClientError, TimeoutError,
            ConnectionError) as exc:
        raise errors.TransientError(f"{store} {op}: {type(exc).__name__}: {exc}") from exc
    except BotoCoreError as exc:
        raise errors.TransientError(f"{store} {op}: {exc}") from exc


def _from_client_error(store: str, op: str, exc: ClientError) -> errors.ReplicatorError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    message = f"{store} {op}: {code or status}: {error.get('Message', '')}".rstrip(": ")
    if code in _THROTTLE_CODES or status in (429, 503) and code not in _CODES:
        headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        return errors.Throttled(message, retry_after=_retry_after(headers.get("retry-after")))
    if op in _CONDITIONAL_WRITES and (code in ("PreconditionFailed", "NoSuchKey")
                                      or status in (404, 412)):
        # If-Match on a replica deleted since it was probed answers 404: it changed too.
        return errors.ReplicaChanged(message)
    if code == "NoSuchUpload" and op in ("UploadPart", "CompleteMultipartUpload"):  # aborted
        # under us, or lost by the store (rclone loses an upload whose part it refused): copy again
        return errors.TransientError(message, reason="upload_lost")
    if code == "ConditionalRequestConflict" or status == 409 and op in _CONDITIONAL_WRITES:
        return errors.ReplicaChanged(message)  # a concurrent conditional write won the race
    if code in _CODES:
        return _CODES[code](message)
    if code == "RequestTimeTooSkewed":
        return errors.PermanentError(message + " (fix the clock: run NTP)", reason="clock_skew")
    if status >= 500 or code in ("InternalError", "RequestTimeout", "ServiceUnavailable"):
        return errors.TransientError(message)
    return errors.PermanentError(message, reason=_snake(code) or f"http_{status}")


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _snake(code: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in code).lstrip("_")
