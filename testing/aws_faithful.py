"""`python -m testing.aws_faithful`: moto's server, answering like AWS S3 where moto 5.2.5 does not.

It is ``testing.moto_server`` (whose etag lock applies here too) with these behaviours of
AWS S3 switched on. Each is a switch, all on; ``FAITHFUL_OFF=name,name`` turns some off
(for debugging):

``part_reads``
    HEAD / GET ``?partNumber=N`` of a multipart object: ``206``, Content-Length of that part,
    ``Content-Range: bytes a-b/TOTAL``, ``x-amz-mp-parts-count`` and the *object's* ETag; GET
    returns that part's bytes. N beyond the part count: ``416 InvalidPartNumber``.
``encryption``
    SSE-KMS and SSE-C objects (single-part, multipart, and their parts) get an ETag that is
    not an MD5 of their data: 32 random hex digits, ``-N`` kept on a multipart object.
    SSE-KMS answers name a KMS key (AWS's managed ``aws/s3`` key when none was given).
    SSE-C objects answer with the customer algorithm and key MD5; GET / HEAD without the
    customer key: ``400 InvalidRequest``, with another key: ``403 AccessDenied``.
``checksums``
    ``Content-MD5`` and ``x-amz-checksum-{crc32,crc32c,crc64nvme,sha1,sha256}`` on PutObject
    and UploadPart are checked against the body: ``400 BadDigest`` on a mismatch,
    ``400 InvalidDigest`` / ``InvalidRequest`` for a malformed value. The checksum is stored
    and echoed even when sent without ``x-amz-sdk-checksum-algorithm`` (botocore sends none
    with an explicit ``ChecksumSHA256=...``). CRC32C and CRC64NVME need ``awscrt``; without
    it they pass unchecked, as on plain moto.
``limits``
    UploadPart part numbers 1..10,000 (``400 InvalidArgument``); one PUT, of an object or a
    part, at most ``FAITHFUL_MAX_PUT_SIZE`` bytes (default 5 GiB; ``400 EntityTooLarge``).
``conditional_writes``
    ``If-Match`` on CompleteMultipartUpload: ``412 PreconditionFailed`` when the current
    object has another ETag, ``404 NoSuchKey`` when there is none.

Where moto 5.2.5 already answers like AWS nothing is patched: every part but the last at
least ``S3_UPLOAD_PART_MIN_SIZE`` bytes (``400 EntityTooSmall`` on CompleteMultipartUpload);
``If-None-Match: *`` on PutObject and CompleteMultipartUpload and ``If-Match`` on PutObject
(``412``); GET of a GLACIER / DEEP_ARCHIVE object: ``403 InvalidObjectState`` until
restored ("Restoring an archived object").
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from moto.core.responses import ActionResult
from moto.s3 import models, responses
from moto.s3.exceptions import InvalidMaxPartNumberArgument, MissingKey, PreconditionFailed, S3ClientError
from moto.s3.models import FakeKey, FakeMultipart, S3Backend
from moto.s3.responses import S3Response
from moto.s3.utils import compute_checksum as moto_compute_checksum
from moto.server import main

import testing.moto_server  # noqa: F401  (imported for its etag-lock patch)

try:
    from awscrt import checksums as crt
except ImportError:  # awscrt (botocore[crt]) is not installed
    crt = None  # type: ignore[assignment]

MAX_PUT_SIZE = int(os.environ.get("FAITHFUL_MAX_PUT_SIZE", 5 * 1024**3))
#: Query parameters that make a GET something other than a read of the object's data.
SUBRESOURCES = {"uploadId", "acl", "tagging", "legal-hold", "retention", "attributes", "torrent"}
CUSTOMER_ALGORITHM = "x-amz-server-side-encryption-customer-algorithm"
CUSTOMER_KEY_MD5 = "x-amz-server-side-encryption-customer-key-MD5"
#: Stands for the account's AWS managed key ``aws/s3``, which S3 uses when a request names none.
MANAGED_KMS_KEY = f"arn:aws:kms:us-east-1:123456789012:key/{uuid.uuid5(uuid.NAMESPACE_URL, 'aws/s3')}"

Handler = Callable[..., Any]


def _wrap(cls: Any, name: str, wrapper: Handler) -> None:
    """Replace ``cls.name`` by ``wrapper(original, self, *args, **kwargs)``."""
    original = getattr(cls, name)

    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        return wrapper(original, self, *args, **kwargs)

    setattr(cls, name, method)


def _before(cls: Any, name: str, check: Callable[..., None]) -> None:
    """Run ``check(self, *args, **kwargs)`` before ``cls.name``; it refuses a request by raising."""

    def checked(original: Handler, self: Any, *args: Any, **kwargs: Any) -> Any:
        check(self, *args, **kwargs)
        return original(self, *args, **kwargs)

    _wrap(cls, name, checked)


def _stored(self: S3Response, key_name: str, query: dict[str, Any]) -> Any:
    """The object (version) a GET / HEAD reads, or None."""
    version = query.get("versionId", [None])[0]
    return self.backend.get_object(self.bucket_name, key_name, version_id=version)


def _answer(self: S3Response, status: int, code: str, message: str) -> Any:
    """An S3 error answer with a status that moto's error model does not know for ``code``."""
    _, headers, body = self.serialized(ActionResult(S3ClientError(code, message)))
    return status, headers, body


# --- part_reads: GetObject / HeadObject API reference, "partNumber" ---------------------------


def _complete_keeping_sizes(original: Handler, self: Any, body: Iterator[tuple[int, str]]) -> Any:
    listed = list(body)  # the parts the object is made of; other uploaded parts are dropped
    result = original(self, iter(listed))
    self.part_sizes = [self.parts[number].size for number, _ in listed]
    return result


def _read_part(self: S3Response, key_name: str, query: dict[str, Any], whole: Handler) -> Any:
    """``whole(query)`` is moto's answer for the whole object; moto's own answer for a single part."""
    key = _stored(self, key_name, query)
    sizes = key.multipart.part_sizes if key is not None and key.multipart else None
    if not sizes or SUBRESOURCES & query.keys():
        return whole(query)
    number = int(query["partNumber"][0])
    if not 1 <= number <= len(sizes):
        # The API reference names no error here; this is what S3 answers (ceph's s3-tests
        # expect it from S3, and MinIO and Swift's s3api answer the same).
        return _answer(self, 416, "InvalidPartNumber", "The requested partnumber is not satisfiable")
    status, headers, body = whole({k: v for k, v in query.items() if k != "partNumber"})
    if status != 200:
        return status, headers, body
    first = sum(sizes[: number - 1])
    last = first + sizes[number - 1] - 1
    for name in [h for h in headers if h.lower().startswith("x-amz-checksum-")]:
        del headers[name]  # the object's checksum is not the part's
    headers.update({"content-length": str(sizes[number - 1]),
                    "content-range": f"bytes {first}-{last}/{key.size}",
                    "x-amz-mp-parts-count": str(len(sizes))})
    return 206, headers, body[first: last + 1] if body else body


def _get_part(original: Handler, self: S3Response, query: dict[str, Any], key_name: str) -> Any:
    if "partNumber" not in query:
        return original(self, query, key_name)
    # moto's GET ignores partNumber for a multipart object: it returns the whole object.
    return _read_part(self, key_name, query, lambda _: original(self, query, key_name))


def _head_part(original: Handler, self: S3Response, bucket_name: str, query: dict[str, Any],
               key_name: str, headers: Any) -> Any:
    if "partNumber" not in query:
        return original(self, bucket_name, query, key_name, headers)
    # moto's HEAD answers with the part's own headers (its ETag): ask it for the object's.
    return _read_part(self, key_name, query, lambda q: original(self, bucket_name, q, key_name, headers))


def part_reads() -> None:
    FakeMultipart.part_sizes = None  # type: ignore[attr-defined]
    _wrap(FakeMultipart, "complete", _complete_keeping_sizes)
    _wrap(S3Response, "_key_response_get", _get_part)
    _wrap(S3Response, "head_object", _head_part)


# --- encryption: "Object" (API reference: ETag), "Using server-side encryption with AWS KMS keys",
# --- "Using server-side encryption with customer-provided keys (SSE-C)" ---------------------------
# Objects encrypted by SSE-KMS or SSE-C "have ETags that are not an MD5 digest of their object
# data"; a multipart ETag is not one "regardless of the method of encryption" (its "-N" makes it
# more than 32 hex digits, as CompleteMultipartUpload says). Parts under SSE-KMS / SSE-C get
# non-MD5 ETags too, as on S3 (the docs do not say so of parts).

_request = threading.local()  # the headers of the request this thread serves (werkzeug: one a thread)


def _remember_request(self: S3Response, request: Any, *_: Any, **__: Any) -> None:
    _request.headers = request.headers


def _customer() -> tuple[str, str] | None:
    """The SSE-C algorithm and key MD5 of the request being served, if it uses SSE-C."""
    headers = getattr(_request, "headers", {})
    if CUSTOMER_ALGORITHM not in headers:
        return None
    return headers[CUSTOMER_ALGORITHM], headers.get(CUSTOMER_KEY_MD5, "")


def _kms(algorithm: Any) -> bool:
    return str(algorithm).startswith("aws:kms")  # aws:kms and aws:kms:dsse


def _random_etag() -> str:
    return hashlib.md5(os.urandom(16)).hexdigest()


def _bucket_default(backend: S3Backend, bucket_name: str) -> dict[str, Any]:
    config = backend.get_bucket(bucket_name).encryption or {}
    return dict(config.get("Rule", {}).get("ApplyServerSideEncryptionByDefault", {}))


def _put_encrypted(original: Handler, self: S3Backend, bucket_name: str, key_name: str, value: bytes,
                   **kwargs: Any) -> Any:
    default = _bucket_default(self, bucket_name)
    algorithm = kwargs.get("encryption") or default.get("SSEAlgorithm")
    multipart = kwargs.get("multipart")
    customer = multipart.sse_customer if multipart else _customer()
    if customer or _kms(algorithm):
        parts = (kwargs.get("etag") or "").partition("-")[2]  # set when completing a multipart upload
        kwargs["etag"] = _random_etag() + (f"-{parts}" if parts else "")
    if _kms(algorithm) and not kwargs.get("kms_key_id"):
        kwargs["kms_key_id"] = default.get("KMSMasterKeyID") or MANAGED_KMS_KEY
    key = original(self, bucket_name, key_name, value, **kwargs)
    key.sse_customer = customer
    return key


def _create_encrypted(original: Handler, self: S3Backend, bucket_name: str, *args: Any) -> Any:
    multipart = original(self, bucket_name, *args)
    default = _bucket_default(self, bucket_name)
    multipart.sse_encryption = multipart.sse_encryption or default.get("SSEAlgorithm")
    if _kms(multipart.sse_encryption) and not multipart.kms_key_id:
        multipart.kms_key_id = default.get("KMSMasterKeyID") or MANAGED_KMS_KEY
    multipart.sse_customer = _customer()
    return multipart


def _encrypted_part(original: Handler, self: Any, part_id: int, value: bytes) -> Any:
    part = original(self, part_id, value)
    if self.sse_customer or _kms(self.sse_encryption):
        part._etag = _random_etag()
    part.sse_customer = self.sse_customer
    return part


def _require_customer_key(self: S3Response, query: dict[str, Any], key_name: str) -> None:
    """GetObject / HeadObject of an SSE-C object must carry the key it was stored with."""
    key = None if SUBRESOURCES & query.keys() else _stored(self, key_name, query)
    if key is None or not key.sse_customer:
        return
    if CUSTOMER_ALGORITHM not in self.headers:
        raise S3ClientError("InvalidRequest", "The object was stored using a form of Server Side Encryption. "
                            "The correct parameters must be provided to retrieve the object.")
    if (self.headers[CUSTOMER_ALGORITHM], self.headers.get(CUSTOMER_KEY_MD5, "")) != key.sse_customer:
        raise S3ClientError("AccessDenied", "Access Denied")


def _require_customer_key_head(self: S3Response, bucket_name: str, query: dict[str, Any],
                               key_name: str, **_: Any) -> None:
    _require_customer_key(self, query, key_name)


def encryption() -> None:
    moto_response_dict = vars(FakeKey)["response_dict"].fget

    def response_dict(key: Any) -> dict[str, Any]:
        headers: dict[str, Any] = moto_response_dict(key)
        if key.sse_customer:
            headers[CUSTOMER_ALGORITHM], headers[CUSTOMER_KEY_MD5] = key.sse_customer
        return headers

    FakeKey.sse_customer = FakeMultipart.sse_customer = None  # type: ignore[attr-defined]
    FakeKey.response_dict = property(response_dict)  # type: ignore[method-assign,assignment]
    _before(S3Response, "setup_class", _remember_request)
    _wrap(S3Backend, "put_object", _put_encrypted)
    _wrap(S3Backend, "create_multipart_upload", _create_encrypted)
    _wrap(FakeMultipart, "set_part", _encrypted_part)
    _before(S3Response, "_key_response_get", _require_customer_key)
    _before(S3Response, "head_object", _require_customer_key_head)


# --- checksums: "Checking object integrity in Amazon S3"; PutObject / UploadPart API reference
# --- (Content-MD5, x-amz-checksum-*); "Error responses" (BadDigest, InvalidDigest) ---------------

_DIGESTS: dict[str, Callable[[bytes], bytes]] = {
    "CRC32": lambda body: binascii.crc32(body).to_bytes(4, "big"),
    "SHA1": lambda body: hashlib.sha1(body).digest(),
    "SHA256": lambda body: hashlib.sha256(body).digest(),
}
if crt is not None:
    _DIGESTS["CRC32C"] = lambda body: crt.crc32c(body).to_bytes(4, "big")
    _DIGESTS["CRC64NVME"] = lambda body: crt.crc64nvme(body).to_bytes(8, "big")
ALGORITHMS = ("CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256")


def _decoded(value: str) -> bytes | None:
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        return None


def _verify_digests(self: S3Response) -> None:
    """Refuse a body that does not match the Content-MD5 or a checksum sent with it."""
    body = self.body or b""
    if (md5 := self.headers.get("Content-MD5")) is not None:
        claimed = _decoded(md5)
        if claimed is None or len(claimed) != 16:
            raise S3ClientError("InvalidDigest", "The Content-MD5 you specified was invalid.")
        if claimed != hashlib.md5(body).digest():
            raise S3ClientError("BadDigest", "The Content-MD5 you specified did not match what we received.")
    for algorithm, digest in _DIGESTS.items():
        header = f"x-amz-checksum-{algorithm.lower()}"
        if (value := self.headers.get(header)) is None:
            continue
        actual, claimed = digest(body), _decoded(value)
        if claimed is None or len(claimed) != len(actual):
            raise S3ClientError("InvalidRequest", f"Value for {header} header is invalid.")
        if claimed != actual:
            raise S3ClientError("BadDigest",
                                f"The {algorithm} you specified did not match the calculated checksum.")


def _get_checksum(original: Handler, self: S3Response, response_headers: dict[str, Any]) -> Any:
    """Keep and echo the checksum sent; moto keeps one only if x-amz-sdk-checksum-algorithm names it."""
    algorithm = self.headers.get("x-amz-sdk-checksum-algorithm", "").upper() or next(
        (a for a in ALGORITHMS if f"x-amz-checksum-{a.lower()}" in self.headers), "")
    header = f"x-amz-checksum-{algorithm.lower()}"
    if not algorithm or header not in self.headers or "x-amz-copy-source" in self.headers:
        return original(self, response_headers)  # no checksum, one in a trailer, or a copy
    response_headers[header] = self.headers[header]  # checked by _verify_digests where it can be
    return algorithm, self.headers[header]


def _compute_checksum(body: bytes, algorithm: str, encode_base64: bool = True) -> bytes:
    """moto's, but CRC32C by awscrt: moto's needs the crc32c package and is CRC32 without it."""
    if (digest := _DIGESTS.get(algorithm.upper())) is None:
        return moto_compute_checksum(body, algorithm, encode_base64)
    value = digest(body)
    return base64.b64encode(value) if encode_base64 else value


def checksums() -> None:
    # Multipart checksums (models) and those moto computes for a request that sent none (responses).
    models.compute_checksum = responses.compute_checksum = _compute_checksum  # type: ignore[attr-defined]
    _before(S3Response, "put_object", _verify_digests)
    _before(S3Response, "upload_part", _verify_digests)
    _wrap(S3Response, "_get_checksum", _get_checksum)


# --- limits: "Amazon S3 multipart upload limits"; "Uploading objects" (one PUT: at most 5 GiB) ---


def _check_size(self: S3Response) -> None:
    if len(self.body or b"") > MAX_PUT_SIZE:
        raise S3ClientError("EntityTooLarge", "Your proposed upload exceeds the maximum allowed object size.")


def _check_part_number(self: S3Response) -> None:
    number = self._get_int_param("partNumber")
    if not 1 <= number <= 10_000:  # moto: 0 → 404 NoSuchUpload
        raise InvalidMaxPartNumberArgument(number)


def limits() -> None:
    _before(S3Response, "put_object", _check_size)
    _before(S3Response, "upload_part", _check_size)
    _before(S3Response, "upload_part", _check_part_number)


# --- conditional_writes: "How to prevent object overwrites with conditional writes";
# --- CompleteMultipartUpload API reference (If-Match, If-None-Match) ----------------------------


def _complete_if_match(self: S3Response, request: Any, body: bytes, bucket_name: str,
                       query: dict[str, Any], key_name: str) -> None:
    if_match = self.headers.get("If-Match")
    if "uploadId" not in query or if_match is None:
        return
    current = self.backend.get_object(bucket_name, key_name)
    if current is not None and current.multipart and current.multipart.id == query["uploadId"][0]:
        return  # a retry of this very completion, which moto answers as done
    if current is None:
        raise MissingKey(key=key_name)
    if if_match.strip('"') != current.etag.strip('"'):
        raise PreconditionFailed("If-Match")


def conditional_writes() -> None:
    _before(S3Response, "_key_response_post", _complete_if_match)


SWITCHES: dict[str, Callable[[], None]] = {
    "part_reads": part_reads,
    "encryption": encryption,
    "checksums": checksums,
    "limits": limits,
    "conditional_writes": conditional_writes,
}


def install(off: str) -> None:
    """Switch every behaviour on but those named in ``off`` (a comma list)."""
    names = {name.strip() for name in off.split(",") if name.strip()}
    if unknown := names - SWITCHES.keys():
        raise SystemExit(f"FAITHFUL_OFF: unknown switches {sorted(unknown)}; known: {list(SWITCHES)}")
    for name, switch_on in SWITCHES.items():
        if name not in names:
            switch_on()


if __name__ == "__main__":
    install(os.environ.get("FAITHFUL_OFF", ""))
    main()
