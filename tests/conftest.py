"""Shared fixtures: real S3 servers (one process per endpoint) and per-test buckets.

The tests about S3 behaviour run against three backends, each started once per session:

- ``moto``: plain moto servers;
- ``faithful``: moto with the AWS behaviours plain moto lacks (``testing.aws_faithful``);
- ``rclone``: ``rclone serve s3`` of a directory, a second, independent implementation.

A module or test opts in with ``@pytest.mark.backends()`` (all three) or
``@pytest.mark.backends("moto")`` (a closer mark wins); its ``world`` then comes once per
backend, with ids ``[moto]``, ``[faithful]``, ``[rclone]``. Everything else (config, deploy,
Prometheus, SQS events) gets one ``world`` on plain moto, whatever it asks. ``--backend NAME``
(repeatable) narrows the marked tests to some backends.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import inspect
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.config import Config as BotoConfig

from replicator.config import Config
from testing.faultproxy import FaultProxy
from testing.motostack import MotoServer, free_port
from testing.rclone import RcloneServer

REGIONS = ("r1", "r2", "r3")
#: Small parts so multipart paths run on small objects (moto's minimum is lowered to match).
PART = 300
THRESHOLD = 256
MOTO_ENV = {"S3_UPLOAD_PART_MIN_SIZE": "256"}
CREDS = {"access_key_id": "testing", "secret_access_key": "testing"}


def s3_client(endpoint: str) -> Any:
    return boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
        # A few retries: the suite loads four moto servers on two cores, and a test's own
        # setup calls should not fail on a hiccup (replicator's retries are under test).
        config=BotoConfig(retries={"total_max_attempts": 3, "mode": "standard"},
                          request_checksum_calculation="when_required",
                          response_checksum_validation="when_required"))


def wait_for(predicate: Callable[[], Any], timeout: float = 60, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        started = time.monotonic()
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(_pause(started))


def _pause(started: float) -> float:
    """Between two looks, rest as long as a look costs (a look lists buckets on moto,
    which serves everyone): cheap checks stay quick, heavy ones stop hogging the servers."""
    return min(1.0, max(0.05, time.monotonic() - started))


BACKENDS = ("moto", "faithful", "rclone")
#: What a backend cannot do, and why: a test that needs it skips with that reason.
LACKS: dict[str, dict[str, str]] = {
    "moto": {},
    "faithful": {},
    "rclone": {
        "tagging": "rclone serve s3 has no object tagging",
        "expires": "rclone serve s3 does not store the Expires header",
        "path_unsafe_keys": "rclone serve s3 stores keys as file paths: it refuses '//' and a "
                            "leading '/', drops a trailing '/', and a path segment over 255 bytes "
                            "fails with a 500",
    },
}

Server = MotoServer | RcloneServer


@dataclass(frozen=True)
class Backend:
    """One S3 implementation under test: its source and region servers, and what it lacks."""

    name: str
    servers: Mapping[str, Server]

    @property
    def lacks(self) -> Mapping[str, str]:
        return LACKS[self.name]

    def require(self, feature: str) -> None:
        """Skip the calling test, saying why, where this backend cannot do ``feature``."""
        if feature in self.lacks:
            pytest.skip(self.lacks[feature])


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--backend", action="append", choices=BACKENDS, default=[],
                     help="run the tests marked `backends` only against this S3 backend "
                          "(repeatable; default: every backend the mark names)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One copy of a `backends`-marked test per backend; an unmarked test stays on moto."""
    mark = metafunc.definition.get_closest_marker("backends")
    if mark is None or "servers" not in metafunc.fixturenames:
        return
    names = list(mark.args or BACKENDS)
    metafunc.parametrize("servers", names, ids=names, indirect=True, scope="session")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``--backend``: deselect the copies of marked tests on the other backends."""
    wanted = config.getoption("backend")
    if not wanted:
        return
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        backend = callspec.params.get("servers") if callspec else None
        (drop if backend is not None and backend not in wanted else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def _stop_all(started: Mapping[str, Server]) -> None:
    for server in started.values():
        server.stop()


@pytest.fixture(scope="session")
def moto_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    """Plain moto: the backend of every test that is not about S3 behaviour."""
    logs = tmp_path_factory.mktemp("moto-logs")
    started: dict[str, Server] = {}
    try:
        for name in ("source", *REGIONS):
            started[name] = MotoServer.start(env=MOTO_ENV, log=logs / f"{name}.log")
        yield Backend("moto", started)
    finally:
        _stop_all(started)


@pytest.fixture(scope="session")
def faithful_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    """moto answering like AWS where AWS is stricter (see DESIGN.md)."""
    if importlib.util.find_spec("testing.aws_faithful") is None:
        pytest.skip("the AWS-faithful backend needs testing/aws_faithful.py, which is not there yet")
    logs = tmp_path_factory.mktemp("faithful-logs")
    started: dict[str, Server] = {}
    try:
        for name in ("source", *REGIONS):
            started[name] = MotoServer.start(env=MOTO_ENV, log=logs / f"{name}.log", faithful=True)
        yield Backend("faithful", started)
    finally:
        _stop_all(started)


@pytest.fixture(scope="session")
def rclone_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    """`rclone serve s3`, one process per endpoint, each serving its own directory."""
    work = tmp_path_factory.mktemp("rclone")
    started: dict[str, Server] = {}
    try:
        for name in ("source", *REGIONS):
            started[name] = RcloneServer.start(work / "roots" / name, work,
                                               work / "logs" / f"{name}.log")
        yield Backend("rclone", started)
    finally:
        _stop_all(started)


@pytest.fixture(scope="session")
def servers(request: pytest.FixtureRequest) -> Backend:
    """The backend this test runs against: its ``backends`` parameter, else plain moto.

    Each backend's servers are their own session fixture, so a backend starts once however
    pytest orders the tests, and plain moto is shared by the marked and the unmarked tests."""
    name = getattr(request, "param", "moto")
    backend: Backend = request.getfixturevalue(f"{name}_servers")
    return backend


@dataclass
class World:
    """One test's buckets on the shared servers, and a config that points at them."""

    tmp: Path
    endpoints: dict[str, str]
    buckets: dict[str, str]
    backend: Backend
    clients: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.clients = {name: s3_client(url) for name, url in self.endpoints.items()}

    @property
    def source(self) -> Any:
        return self.clients["source"]

    def raw_config(self, **overrides: Any) -> dict[str, Any]:
        def endpoint(name: str) -> dict[str, Any]:
            return {"bucket": self.buckets[name], "endpoint_url": self.endpoints[name],
                    "region": "us-east-1", "credentials": CREDS}
        raw: dict[str, Any] = {
            "source": endpoint("source"),
            "regions": [{"name": r, **endpoint(r)} for r in REGIONS],
            "replication": {"concurrency": 8, "multipart_threshold": THRESHOLD, "part_size": PART,
                            "parts_in_flight": 2},
            "feed": {"poll_interval": 0.2},
            "journal": {"path": str(self.tmp / "journal.db")},
            "retry": {"request_attempts": 2, "request_backoff": 0.05, "request_backoff_max": 0.2,
                      "item_attempts": 50, "item_backoff": 0.2, "item_backoff_max": 0.5,
                      "failed_interval": 1},
            "http": {"listen": f"127.0.0.1:{free_port()}"},
            "shutdown_grace": 5,
        }
        for dotted, value in overrides.items():
            *parents, leaf = dotted.split("__")
            node = raw
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
        return raw

    def config(self, **overrides: Any) -> Config:
        return Config.parse(self.raw_config(**overrides))

    def config_file(self, **overrides: Any) -> Path:
        path = self.tmp / "config.yaml"
        path.write_text(yaml.safe_dump(self.raw_config(**overrides), allow_unicode=True))
        return path

    def put(self, key: str, body: bytes, **kwargs: Any) -> str:
        return str(self.source.put_object(Bucket=self.buckets["source"], Key=key, Body=body,
                                          **kwargs)["ETag"]).strip('"')

    def objects(self, name: str) -> dict[str, str]:
        """Every key in one bucket with the md5 of its bytes (read back, not the etag).

        A key deleted between the listing and its read (the daemon is running) is absent.
        """
        client, bucket = self.clients[name], self.buckets[name]
        out = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", ()):
                try:
                    body = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
                except client.exceptions.NoSuchKey:
                    continue
                out[item["Key"]] = hashlib.md5(body).hexdigest()
        return out

    def etags(self, name: str) -> dict[str, str]:
        """Every key in one bucket with its etag: one request per 1000 keys."""
        client, bucket = self.clients[name], self.buckets[name]
        return {item["Key"]: item["ETag"]
                for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
                for item in page.get("Contents", ())}

    def converged(self) -> bool:
        """Every region holds exactly the source's keys with identical bytes."""
        want = self.objects("source")
        return all(self.objects(r) == want for r in REGIONS)

    def open_uploads(self) -> dict[str, list[str]]:
        """Every region's open multipart uploads, by key."""
        return {r: self._open_uploads(r) for r in REGIONS}

    def _open_uploads(self, name: str) -> list[str]:
        client = self.clients[name]
        try:
            listed = client.list_multipart_uploads(Bucket=self.buckets[name])
        except client.exceptions.ClientError as exc:
            # rclone serve s3 answers 404 NoSuchUpload for a bucket that never had an upload.
            if self.backend.name == "rclone" and exc.response["Error"]["Code"] == "NoSuchUpload":
                return []
            raise
        return [u["Key"] for u in listed.get("Uploads", ())]


@pytest.fixture
def proxies(world: World) -> Iterator[dict[str, FaultProxy]]:
    """A fault proxy in front of the source and each region; the world is rewired through them
    (the test's own clients keep talking to moto directly)."""
    started = {name: FaultProxy(url).start() for name, url in world.endpoints.items()}
    world.endpoints = {name: p.endpoint for name, p in started.items()}
    try:
        yield started
    finally:
        for proxy in started.values():
            proxy.stop()


@pytest.fixture
def world(servers: Backend, tmp_path: Path) -> World:
    tag = uuid.uuid4().hex[:10]
    buckets = {name: f"t-{tag}-{name}" for name in servers.servers}
    w = World(tmp_path, {n: s.endpoint for n, s in servers.servers.items()}, buckets, servers)
    for name, client in w.clients.items():
        client.create_bucket(Bucket=buckets[name])
    return w


async def eventually(predicate: Callable[[], Any], timeout: float = 60, what: str = "condition") -> Any:
    """``wait_for`` for async tests: a blocking predicate runs off the event loop."""
    deadline = time.monotonic() + timeout
    while True:
        started = time.monotonic()
        if inspect.iscoroutinefunction(predicate):
            value = await predicate()
        else:
            value = await asyncio.to_thread(predicate)
            if inspect.isawaitable(value):  # a lambda around an async call
                value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(_pause(started))
