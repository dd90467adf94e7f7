"""The fault proxy must forward faithfully when idle and fault exactly as told."""

from __future__ import annotations

import gzip
from collections.abc import Iterator

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

from testing.faultproxy import FaultProxy
from testing.motostack import MotoServer

BUCKET = "proxy-test"
# One attempt and no flexible checksums: the client must see each fault raw.
CLIENT_CONFIG = Config(
    retries={"total_max_attempts": 1},
    request_checksum_calculation="when_required",
    response_checksum_validation="when_required",
)


def _client(endpoint: str):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=CLIENT_CONFIG,
    )


@pytest.fixture(scope="module")
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer.start()
    try:
        direct = _client(server.endpoint)
        direct.create_bucket(Bucket=BUCKET)
        direct.close()
        yield server
    finally:
        server.stop()


@pytest.fixture
def proxy(moto_server: MotoServer) -> Iterator[FaultProxy]:
    proxy = FaultProxy(moto_server.endpoint).start()
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture
def s3(proxy: FaultProxy):
    client = _client(proxy.endpoint)
    yield client
    client.close()


@pytest.fixture
def direct(moto_server: MotoServer):
    """Talks to moto without the proxy, to see what was really stored."""
    client = _client(moto_server.endpoint)
    yield client
    client.close()


def _differing_bits(a: bytes, b: bytes) -> int:
    assert len(a) == len(b)
    return sum(bin(x ^ y).count("1") for x, y in zip(a, b, strict=True))


def _payload(size: int) -> bytes:
    return bytes(i % 251 for i in range(size))


def test_awkward_keys_round_trip_byte_for_byte(s3, direct, proxy: FaultProxy) -> None:
    body = _payload(300_000)
    for key in ["dir/with space.txt", "a+b.txt", "literal%2Bplus.txt", "ünïcødé/日本.bin"]:
        s3.put_object(Bucket=BUCKET, Key=key, Body=body, ContentType="text/x-test")
        assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == body
        head = s3.head_object(Bucket=BUCKET, Key=key)
        assert head["ContentLength"] == len(body)  # HEAD keeps upstream's length
        assert head["ContentType"] == "text/x-test"
        # Stored under exactly this key, not a re-encoded variant of it.
        assert direct.get_object(Bucket=BUCKET, Key=key)["Body"].read() == body
    assert ("PUT", "/proxy-test/literal%252Bplus.txt", 200) in proxy.log


def test_gzip_encoded_bodies_pass_through_undecoded(s3, direct) -> None:
    body = gzip.compress(_payload(20_000), mtime=0)
    s3.put_object(Bucket=BUCKET, Key="page.css", Body=body, ContentEncoding="gzip")
    stored = direct.get_object(Bucket=BUCKET, Key="page.css")
    assert stored["ContentEncoding"] == "gzip" and stored["Body"].read() == body
    assert s3.get_object(Bucket=BUCKET, Key="page.css")["Body"].read() == body


def test_refuse_then_listen_again_on_same_port(s3, proxy: FaultProxy) -> None:
    s3.put_object(Bucket=BUCKET, Key="refuse.txt", Body=b"before")  # pools a connection
    port = proxy.port
    proxy.refuse()
    with pytest.raises(botocore.exceptions.EndpointConnectionError):
        s3.get_object(Bucket=BUCKET, Key="refuse.txt")
    proxy.refuse(False)
    assert proxy.port == port
    assert s3.get_object(Bucket=BUCKET, Key="refuse.txt")["Body"].read() == b"before"


def test_fail_answers_slowdown_with_retry_after(s3, proxy: FaultProxy) -> None:
    proxy.fail(1.0)
    with pytest.raises(botocore.exceptions.ClientError) as err:
        s3.list_objects_v2(Bucket=BUCKET)
    response = err.value.response
    assert response["Error"]["Code"] == "SlowDown"
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert response["ResponseMetadata"]["HTTPHeaders"]["retry-after"] == "1"
    proxy.fail(0)
    s3.list_objects_v2(Bucket=BUCKET)


def test_fail_path_contains_narrows_the_fault(s3, proxy: FaultProxy) -> None:
    for key in ("narrow/a.txt", "narrow/b.txt"):
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"x")
    proxy.fail(1.0, status=500, code="InternalError", path_contains="continuation-token")
    page = s3.list_objects_v2(Bucket=BUCKET, Prefix="narrow/", MaxKeys=1)  # no token yet
    with pytest.raises(botocore.exceptions.ClientError) as err:
        s3.list_objects_v2(Bucket=BUCKET, Prefix="narrow/", MaxKeys=1,
                           ContinuationToken=page["NextContinuationToken"])
    assert err.value.response["Error"]["Code"] == "InternalError"


def test_fail_fraction_and_methods_are_respected(s3, proxy: FaultProxy) -> None:
    proxy.fail(0.5, methods={"GET"})
    s3.put_object(Bucket=BUCKET, Key="half.txt", Body=b"x")  # PUT is never failed
    outcomes = []
    for _ in range(40):
        try:
            s3.get_object(Bucket=BUCKET, Key="half.txt")["Body"].read()
            outcomes.append(True)
        except botocore.exceptions.ClientError:
            outcomes.append(False)
    assert 5 < outcomes.count(False) < 35
    assert proxy.requests["GET"] == 40


def test_flip_request_body_corrupts_one_bit_once(s3, direct, proxy: FaultProxy) -> None:
    body = _payload(100_000)
    proxy.flip_request_body()
    s3.put_object(Bucket=BUCKET, Key="flip-req.bin", Body=body)
    stored = direct.get_object(Bucket=BUCKET, Key="flip-req.bin")["Body"].read()
    assert _differing_bits(stored, body) == 1
    s3.put_object(Bucket=BUCKET, Key="flip-req.bin", Body=body)
    assert direct.get_object(Bucket=BUCKET, Key="flip-req.bin")["Body"].read() == body


def test_flip_request_body_ignores_bodies_below_min_size(s3, direct, proxy: FaultProxy) -> None:
    small, large = _payload(1000), _payload(1001)
    proxy.flip_request_body(min_size=len(large))
    s3.put_object(Bucket=BUCKET, Key="small.bin", Body=small)
    assert direct.get_object(Bucket=BUCKET, Key="small.bin")["Body"].read() == small
    s3.put_object(Bucket=BUCKET, Key="large.bin", Body=large)  # the flip was kept for this one
    assert _differing_bits(direct.get_object(Bucket=BUCKET, Key="large.bin")["Body"].read(),
                           large) == 1


def test_flip_response_body_corrupts_one_get(s3, direct, proxy: FaultProxy) -> None:
    body = _payload(50_000)
    direct.put_object(Bucket=BUCKET, Key="flip-resp.bin", Body=body)
    proxy.flip_response_body()
    first = s3.get_object(Bucket=BUCKET, Key="flip-resp.bin")["Body"].read()
    assert _differing_bits(first, body) == 1
    assert s3.get_object(Bucket=BUCKET, Key="flip-resp.bin")["Body"].read() == body
    assert direct.get_object(Bucket=BUCKET, Key="flip-resp.bin")["Body"].read() == body


def test_flip_response_body_path_contains_spares_listings(s3, direct, proxy: FaultProxy) -> None:
    body = _payload(50_000)
    direct.put_object(Bucket=BUCKET, Key="target.bin", Body=body)
    proxy.flip_response_body(path_contains="/target.bin")
    s3.list_objects_v2(Bucket=BUCKET)  # a 2xx GET with a body, but not the target
    assert _differing_bits(s3.get_object(Bucket=BUCKET, Key="target.bin")["Body"].read(), body) == 1


def test_reset_mid_body_drops_connection_and_stores_nothing(s3, direct, proxy: FaultProxy) -> None:
    proxy.reset_mid_body()
    with pytest.raises(botocore.exceptions.ConnectionClosedError):
        s3.put_object(Bucket=BUCKET, Key="reset.bin", Body=_payload(200_000))
    with pytest.raises(botocore.exceptions.ClientError) as err:
        direct.head_object(Bucket=BUCKET, Key="reset.bin")
    assert err.value.response["Error"]["Code"] == "404"
    assert ("PUT", "/proxy-test/reset.bin", None) in proxy.log
    s3.put_object(Bucket=BUCKET, Key="reset.bin", Body=b"clean")  # only `count` requests
    assert direct.get_object(Bucket=BUCKET, Key="reset.bin")["Body"].read() == b"clean"


def test_reset_clears_faults_and_counters(s3, proxy: FaultProxy) -> None:
    s3.list_objects_v2(Bucket=BUCKET)
    proxy.fail(1.0)
    proxy.refuse()
    proxy.reset()
    assert not proxy.requests and not proxy.log
    s3.list_objects_v2(Bucket=BUCKET)
    assert proxy.requests == {"GET": 1}
