"""The AWS-faithful endpoint (testing/aws_faithful.py) beside plain moto.

One test per switch shows the faithful server answering as AWS S3 documents and plain
moto 5.2.5 answering otherwise; where moto already answers like AWS, the test shows both do.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from testing.motostack import MotoServer

from ..conftest import s3_client

ENV = {"S3_UPLOAD_PART_MIN_SIZE": "256"}
MAX_PUT = 64 * 1024
MANAGED_KMS_KEY = re.compile(r"arn:aws:kms:us-east-1:123456789012:key/[0-9a-f-]{36}")
RANDOM_ETAG = re.compile(r'"[0-9a-f]{32}"')
SERVERS: dict[str, dict[str, Any]] = {
    "plain": {"env": ENV},
    "faithful": {"faithful": True, "env": {**ENV, "FAITHFUL_MAX_PUT_SIZE": str(MAX_PUT)}},
    "checksums_off": {"faithful": True, "env": {**ENV, "FAITHFUL_OFF": "checksums"}},
}


@pytest.fixture(scope="module")
def endpoints(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, MotoServer]]:
    logs = tmp_path_factory.mktemp("aws-faithful")
    started: dict[str, MotoServer] = {}

    def start(name: str) -> None:
        started[name] = MotoServer.start(log=logs / f"{name}.log", **SERVERS[name])

    try:
        # Start-up is mostly importing moto: side by side, three cost about what one does.
        with ThreadPoolExecutor(len(SERVERS)) as pool:
            list(pool.map(start, SERVERS))
        yield started
    finally:
        with ThreadPoolExecutor(len(SERVERS)) as pool:
            list(pool.map(MotoServer.stop, started.values()))


@dataclass
class Side:
    """One bucket on one server, and shorthands for the calls the tests repeat."""

    client: Any
    bucket: str

    def put(self, key: str, body: bytes, **kwargs: Any) -> Any:
        return self.client.put_object(Bucket=self.bucket, Key=key, Body=body, **kwargs)

    def head(self, key: str, **kwargs: Any) -> Any:
        return self.client.head_object(Bucket=self.bucket, Key=key, **kwargs)

    def get(self, key: str, **kwargs: Any) -> Any:
        return self.client.get_object(Bucket=self.bucket, Key=key, **kwargs)

    def listed_etag(self, key: str) -> str:
        return str(self.client.list_objects_v2(Bucket=self.bucket, Prefix=key)["Contents"][0]["ETag"])

    def start_upload(self, key: str, parts: list[bytes], **kwargs: Any) -> tuple[str, list[dict[str, Any]]]:
        upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=key, **kwargs)["UploadId"]
        listed = [{"PartNumber": number, "ETag": self.client.upload_part(
            Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=part)["ETag"]}
            for number, part in enumerate(parts, 1)]
        return upload_id, listed

    def complete(self, key: str, upload_id: str, listed: list[dict[str, Any]], **kwargs: Any) -> Any:
        return self.client.complete_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                                     MultipartUpload={"Parts": listed}, **kwargs)

    def upload(self, key: str, parts: list[bytes], **kwargs: Any) -> Any:
        return self.complete(key, *self.start_upload(key, parts, **kwargs))


def _side(server: MotoServer, client: Any = None) -> Side:
    side = Side(client or s3_client(server.endpoint), f"t-{uuid.uuid4().hex[:12]}")
    side.client.create_bucket(Bucket=side.bucket)
    return side


@pytest.fixture
def plain(endpoints: dict[str, MotoServer]) -> Side:
    return _side(endpoints["plain"])


@pytest.fixture
def faithful(endpoints: dict[str, MotoServer]) -> Side:
    return _side(endpoints["faithful"])


def failure(call: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[int, str, str]:
    """Status, error code and message of a call that must fail (a HEAD's code is its status)."""
    with pytest.raises(ClientError) as caught:
        call(*args, **kwargs)
    error, meta = caught.value.response["Error"], caught.value.response["ResponseMetadata"]
    return meta["HTTPStatusCode"], error["Code"], error.get("Message", "")


def status(response: Any) -> int:
    return int(response["ResponseMetadata"]["HTTPStatusCode"])


def md5_etag(body: bytes) -> str:
    return f'"{hashlib.md5(body).hexdigest()}"'


def composite_etag(parts: list[bytes]) -> str:
    return f'"{hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest()}-{len(parts)}"'


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


CHECKSUMS: dict[str, Callable[[bytes], str]] = {
    "CRC32": lambda body: b64(binascii.crc32(body).to_bytes(4, "big")),
    "SHA1": lambda body: b64(hashlib.sha1(body).digest()),
    "SHA256": lambda body: b64(hashlib.sha256(body).digest()),
}


# --- part_reads -------------------------------------------------------------------------------


def test_part_reads_answer_with_the_part_and_the_objects_etag(plain: Side, faithful: Side) -> None:
    parts = [os.urandom(300), os.urandom(300), os.urandom(100)]
    for side in (plain, faithful):
        assert side.upload("mp", parts)["ETag"] == composite_etag(parts)

    head = faithful.head("mp", PartNumber=2)
    assert (status(head), head["ContentLength"], head["ContentRange"], head["PartsCount"], head["ETag"]) == (
        206, 300, "bytes 300-599/700", 3, composite_etag(parts))
    got = faithful.get("mp", PartNumber=3)
    assert (status(got), got["ContentLength"], got["ContentRange"], got["PartsCount"], got["ETag"]) == (
        206, 100, "bytes 600-699/700", 3, composite_etag(parts))
    assert got["Body"].read() == parts[2]
    assert failure(faithful.get, "mp", PartNumber=4) == (
        416, "InvalidPartNumber", "The requested partnumber is not satisfiable")
    assert failure(faithful.head, "mp", PartNumber=4)[:2] == (416, "416")

    # Plain moto: HEAD answers with the part's own ETag and no range, GET with the whole object.
    head = plain.head("mp", PartNumber=2)
    assert (status(head), head["ContentLength"], head["PartsCount"], head["ETag"]) == (
        200, 300, 3, md5_etag(parts[1]))
    assert "ContentRange" not in head
    got = plain.get("mp", PartNumber=3)
    assert (status(got), got["ContentLength"], got["Body"].read()) == (200, 700, b"".join(parts))


def test_part_one_of_a_single_part_object_is_the_object_on_both(plain: Side, faithful: Side) -> None:
    for side in (plain, faithful):
        side.put("one", b"hello")
        got = side.get("one", PartNumber=1)
        assert (status(got), got["ContentRange"], got["Body"].read()) == (206, "bytes 0-4/5", b"hello")
        assert failure(side.get, "one", PartNumber=2)[0] == 416


# --- encryption -------------------------------------------------------------------------------


def test_sse_kms_etag_is_not_the_md5(plain: Side, faithful: Side) -> None:
    body = b"encrypted with a KMS key"
    put = plain.put("k", body, ServerSideEncryption="aws:kms")
    assert (put["ETag"], put["ServerSideEncryption"]) == (md5_etag(body), "aws:kms")
    assert "SSEKMSKeyId" not in put

    put = faithful.put("k", body, ServerSideEncryption="aws:kms")
    etag, key_id = put["ETag"], put["SSEKMSKeyId"]
    assert RANDOM_ETAG.fullmatch(etag) and etag != md5_etag(body)
    assert (put["ServerSideEncryption"], MANAGED_KMS_KEY.fullmatch(key_id) is not None) == ("aws:kms", True)
    head, got = faithful.head("k"), faithful.get("k")
    assert (head["ETag"], head["ServerSideEncryption"], head["SSEKMSKeyId"]) == (etag, "aws:kms", key_id)
    assert (got["ETag"], got["SSEKMSKeyId"], got["Body"].read()) == (etag, key_id, body)
    assert faithful.listed_etag("k") == etag
    assert faithful.put("k", body, ServerSideEncryption="aws:kms")["ETag"] != etag  # chosen at each write
    named = faithful.put("named", body, ServerSideEncryption="aws:kms", SSEKMSKeyId="my-key")
    assert named["SSEKMSKeyId"] == "my-key"


def test_bucket_default_sse_kms_etag_is_not_the_md5(plain: Side, faithful: Side) -> None:
    body = b"encrypted by the bucket's default"
    for side in (plain, faithful):
        side.client.put_bucket_encryption(Bucket=side.bucket, ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}}]})
    assert plain.put("k", body)["ETag"] == md5_etag(body)
    put = faithful.put("k", body)
    assert RANDOM_ETAG.fullmatch(put["ETag"]) and put["ETag"] != md5_etag(body)
    assert (put["ServerSideEncryption"], faithful.head("k")["ETag"]) == ("aws:kms", put["ETag"])


def test_sse_kms_multipart_etag_is_not_the_composite_md5(plain: Side, faithful: Side) -> None:
    parts = [os.urandom(300), os.urandom(100)]
    _, listed = plain.start_upload("mp", parts, ServerSideEncryption="aws:kms")
    assert [p["ETag"] for p in listed] == [md5_etag(p) for p in parts]
    assert plain.upload("mp", parts, ServerSideEncryption="aws:kms")["ETag"] == composite_etag(parts)

    upload_id, listed = faithful.start_upload("mp", parts, ServerSideEncryption="aws:kms")
    for entry, part in zip(listed, parts, strict=True):
        assert RANDOM_ETAG.fullmatch(entry["ETag"]) and entry["ETag"] != md5_etag(part)
    done = faithful.complete("mp", upload_id, listed)
    etag = done["ETag"]
    assert re.fullmatch(r'"[0-9a-f]{32}-2"', etag) and etag != composite_etag(parts)
    assert (done["ServerSideEncryption"], MANAGED_KMS_KEY.fullmatch(done["SSEKMSKeyId"]) is not None) == (
        "aws:kms", True)
    assert faithful.head("mp")["ETag"] == faithful.listed_etag("mp") == etag
    assert faithful.get("mp")["Body"].read() == b"".join(parts)


def test_sse_c_etag_is_not_the_md5_and_reads_need_the_key(plain: Side, faithful: Side) -> None:
    body, key, other = b"encrypted with my key", os.urandom(32), os.urandom(32)
    sse_c = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key}
    assert plain.put("c", body, **sse_c)["ETag"] == md5_etag(body)
    assert plain.head("c")["ETag"] == md5_etag(body)  # plain moto reads it without the key

    put = faithful.put("c", body, **sse_c)
    etag = put["ETag"]
    assert RANDOM_ETAG.fullmatch(etag) and etag != md5_etag(body)
    assert put["SSECustomerAlgorithm"] == "AES256"
    assert put["SSECustomerKeyMD5"] == b64(hashlib.md5(key).digest())
    assert failure(faithful.head, "c")[:2] == (400, "400")
    assert failure(faithful.get, "c") == (400, "InvalidRequest", "The object was stored using a form of "
                                          "Server Side Encryption. The correct parameters must be provided "
                                          "to retrieve the object.")
    assert failure(faithful.get, "c", SSECustomerAlgorithm="AES256", SSECustomerKey=other)[:2] == (
        403, "AccessDenied")
    got = faithful.get("c", **sse_c)
    assert (got["ETag"], got["SSECustomerAlgorithm"], got["Body"].read()) == (etag, "AES256", body)
    assert faithful.head("c", **sse_c)["ETag"] == faithful.listed_etag("c") == etag


# --- checksums --------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", sorted(CHECKSUMS))
def test_wrong_checksum_is_bad_digest(plain: Side, faithful: Side, algorithm: str) -> None:
    wrong = {f"Checksum{algorithm}": CHECKSUMS[algorithm](b"other bytes")}
    assert failure(faithful.put, "k", b"body", **wrong) == (
        400, "BadDigest", f"The {algorithm} you specified did not match the calculated checksum.")
    assert failure(faithful.head, "k")[:2] == (404, "404")  # nothing stored
    assert status(plain.put("k", b"body", **wrong)) == 200
    assert plain.get("k")["Body"].read() == b"body"


@pytest.mark.parametrize("algorithm", ["CRC32C", "CRC64NVME"])
def test_crc32c_and_crc64nvme_are_checked_with_awscrt(faithful: Side, algorithm: str) -> None:
    checksums = pytest.importorskip("awscrt.checksums")
    crc = getattr(checksums, algorithm.lower())
    width = 8 if algorithm == "CRC64NVME" else 4
    right, wrong = (b64(crc(b).to_bytes(width, "big")) for b in (b"body", b"other"))
    assert failure(faithful.put, "k", b"body", **{f"Checksum{algorithm}": wrong})[:2] == (400, "BadDigest")
    assert faithful.put("k", b"body", **{f"Checksum{algorithm}": right})[f"Checksum{algorithm}"] == right


def test_multipart_crc32c_is_the_composite_of_the_parts(plain: Side, faithful: Side) -> None:
    checksums = pytest.importorskip("awscrt.checksums")
    parts = [os.urandom(300), os.urandom(100)]
    crcs = [checksums.crc32c(part).to_bytes(4, "big") for part in parts]
    for side in (plain, faithful):
        upload_id = side.client.create_multipart_upload(
            Bucket=side.bucket, Key="mp", ChecksumAlgorithm="CRC32C")["UploadId"]
        listed = []
        for number, (part, crc) in enumerate(zip(parts, crcs, strict=True), 1):
            etag = side.client.upload_part(Bucket=side.bucket, Key="mp", UploadId=upload_id,
                                           PartNumber=number, Body=part, ChecksumCRC32C=b64(crc))["ETag"]
            listed.append({"PartNumber": number, "ETag": etag, "ChecksumCRC32C": b64(crc)})
        side.complete("mp", upload_id, listed)
    composite = b64(checksums.crc32c(b"".join(crcs)).to_bytes(4, "big")) + "-2"
    assert faithful.get("mp", ChecksumMode="ENABLED")["ChecksumCRC32C"] == composite
    # moto computes CRC32 where the crc32c package is missing.
    assert plain.get("mp", ChecksumMode="ENABLED")["ChecksumCRC32C"] != composite


def test_wrong_content_md5_is_bad_digest(plain: Side, faithful: Side) -> None:
    wrong = b64(hashlib.md5(b"other bytes").digest())
    assert failure(faithful.put, "k", b"body", ContentMD5=wrong) == (
        400, "BadDigest", "The Content-MD5 you specified did not match what we received.")
    assert failure(faithful.put, "k", b"body", ContentMD5="not-an-md5") == (
        400, "InvalidDigest", "The Content-MD5 you specified was invalid.")
    assert status(plain.put("k", b"body", ContentMD5=wrong)) == 200
    assert status(faithful.put("k", b"body", ContentMD5=b64(hashlib.md5(b"body").digest()))) == 200


def test_checksum_is_kept_and_echoed(plain: Side, faithful: Side) -> None:
    """botocore sends an explicit checksum without x-amz-sdk-checksum-algorithm; moto then drops it."""
    sha = CHECKSUMS["SHA256"](b"body")
    assert faithful.put("k", b"body", ChecksumSHA256=sha)["ChecksumSHA256"] == sha
    assert faithful.head("k", ChecksumMode="ENABLED")["ChecksumSHA256"] == sha
    assert faithful.get("k", ChecksumMode="ENABLED")["ChecksumSHA256"] == sha
    assert "ChecksumSHA256" not in plain.put("k", b"body", ChecksumSHA256=sha)
    assert "ChecksumSHA256" not in plain.head("k", ChecksumMode="ENABLED")


def test_bad_part_is_refused_and_the_good_one_kept(plain: Side, faithful: Side) -> None:
    good, bad = os.urandom(300), os.urandom(300)
    wrong_md5 = b64(hashlib.md5(good).digest())
    for side in (plain, faithful):
        upload_id, listed = side.start_upload("mp", [good])
        call = {"Bucket": side.bucket, "Key": "mp", "UploadId": upload_id, "PartNumber": 1, "Body": bad}
        if side is faithful:
            assert failure(side.client.upload_part, **call, ContentMD5=wrong_md5)[:2] == (400, "BadDigest")
            assert failure(side.client.upload_part, **call, ChecksumSHA256=CHECKSUMS["SHA256"](good))[:2] == (
                400, "BadDigest")
            kept = good
        else:
            assert status(side.client.upload_part(**call, ContentMD5=wrong_md5)) == 200
            kept = bad
        parts = side.client.list_parts(Bucket=side.bucket, Key="mp", UploadId=upload_id)["Parts"]
        assert [p["ETag"] for p in parts] == [md5_etag(kept)]


def test_a_default_boto3_client_gets_its_crc32_back(endpoints: dict[str, MotoServer]) -> None:
    """botocore's default (when_supported) sends x-amz-checksum-crc32 on every PutObject."""
    for server in (endpoints["plain"], endpoints["faithful"]):
        client = boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        side = _side(server, client)
        assert side.put("k", b"body")["ChecksumCRC32"] == CHECKSUMS["CRC32"](b"body")


# --- limits -----------------------------------------------------------------------------------


def test_put_above_the_maximum_is_entity_too_large(plain: Side, faithful: Side) -> None:
    big = os.urandom(MAX_PUT + 1)
    assert failure(faithful.put, "big", big)[:2] == (400, "EntityTooLarge")
    assert status(faithful.put("max", big[:MAX_PUT])) == 200
    assert status(plain.put("big", big)) == 200


def test_part_numbers_are_1_to_10000(plain: Side, faithful: Side) -> None:
    for side, zero in ((plain, (404, "NoSuchUpload")), (faithful, (400, "InvalidArgument"))):
        upload_id = side.client.create_multipart_upload(Bucket=side.bucket, Key="mp")["UploadId"]
        call = {"Bucket": side.bucket, "Key": "mp", "UploadId": upload_id, "Body": b"x"}
        assert failure(side.client.upload_part, **call, PartNumber=0)[:2] == zero
        assert failure(side.client.upload_part, **call, PartNumber=10_001) == (
            400, "InvalidArgument", "Part number must be an integer between 1 and 10000, inclusive")
        assert status(side.client.upload_part(**call, PartNumber=10_000)) == 200


def test_parts_below_the_minimum_are_entity_too_small_on_both(plain: Side, faithful: Side) -> None:
    """moto already enforces S3_UPLOAD_PART_MIN_SIZE on every part but the last."""
    for side in (plain, faithful):
        upload_id, listed = side.start_upload("small", [b"s" * 255, b"last"])
        assert failure(side.complete, "small", upload_id, listed)[:2] == (400, "EntityTooSmall")
        assert side.upload("ok", [b"s" * 256, b"last"])["ETag"] == composite_etag([b"s" * 256, b"last"])


# --- archived storage classes (moto already matches AWS) ---------------------------------------


def test_archived_objects_need_a_restore_on_both(plain: Side, faithful: Side) -> None:
    for side in (plain, faithful):
        for storage_class in ("GLACIER", "DEEP_ARCHIVE"):
            side.put(storage_class, b"cold", StorageClass=storage_class)
            assert side.head(storage_class)["StorageClass"] == storage_class
            assert failure(side.get, storage_class)[:2] == (403, "InvalidObjectState")
            restore = side.client.restore_object(Bucket=side.bucket, Key=storage_class,
                                                 RestoreRequest={"Days": 1})
            assert status(restore) == 202
            assert side.get(storage_class)["Body"].read() == b"cold"
        side.put("instant", b"warm", StorageClass="GLACIER_IR")
        assert side.get("instant")["Body"].read() == b"warm"


# --- conditional_writes -----------------------------------------------------------------------


def test_conditional_puts_are_enforced_on_both(plain: Side, faithful: Side) -> None:
    for side in (plain, faithful):
        etag = side.put("k", b"v1")["ETag"]
        assert failure(side.put, "k", b"v2", IfNoneMatch="*")[:2] == (412, "PreconditionFailed")
        assert failure(side.put, "k", b"v2", IfMatch='"0123456789abcdef0123456789abcdef"')[:2] == (
            412, "PreconditionFailed")
        assert side.put("k", b"v2", IfMatch=etag)["ETag"] == md5_etag(b"v2")


def test_conditional_completions(plain: Side, faithful: Side) -> None:
    parts = [os.urandom(300), b"last"]
    for side in (plain, faithful):
        etag = side.put("k", b"current")["ETag"]
        # If-None-Match: * is enforced by moto already.
        assert failure(side.complete, "k", *side.start_upload("k", parts), IfNoneMatch="*")[:2] == (
            412, "PreconditionFailed")
        assert status(side.complete("k", *side.start_upload("k", parts), IfMatch=etag)) == 200

    other = '"0123456789abcdef0123456789abcdef"'
    current = faithful.head("k")["ETag"]
    upload = faithful.start_upload("k", parts)
    assert failure(faithful.complete, "k", *upload, IfMatch=other)[:2] == (412, "PreconditionFailed")
    upload = faithful.start_upload("absent", parts)
    assert failure(faithful.complete, "absent", *upload, IfMatch=other)[:2] == (404, "NoSuchKey")
    assert faithful.head("k")["ETag"] == current
    # Plain moto completes whatever If-Match says.
    assert status(plain.complete("k", *plain.start_upload("k", parts), IfMatch=other)) == 200
    assert status(plain.complete("absent", *plain.start_upload("absent", parts), IfMatch=other)) == 200


# --- FAITHFUL_OFF -----------------------------------------------------------------------------


def test_faithful_off_turns_single_switches_off(endpoints: dict[str, MotoServer]) -> None:
    side = _side(endpoints["checksums_off"])
    wrong = b64(hashlib.md5(b"other bytes").digest())
    assert status(side.put("k", b"body", ContentMD5=wrong)) == 200
    assert RANDOM_ETAG.fullmatch(side.put("e", b"body", ServerSideEncryption="aws:kms")["ETag"])
