"""Shared fixtures: real moto servers (one process per endpoint) and per-test buckets."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.config import Config as BotoConfig

from testing.motostack import MotoServer, free_port
from replicator.config import Config

from testing.faultproxy import FaultProxy

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


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, MotoServer]]:
    logs = tmp_path_factory.mktemp("moto-logs")
    started: dict[str, MotoServer] = {}
    try:
        for name in ("source", *REGIONS):
            started[name] = MotoServer.start(env=MOTO_ENV, log=logs / f"{name}.log")
        yield started
    finally:
        for server in started.values():
            server.stop()


@dataclass
class World:
    """One test's buckets on the shared servers, and a config that points at them."""

    tmp: Path
    endpoints: dict[str, str]
    buckets: dict[str, str]
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
        return {r: [u["Key"] for u in self.clients[r].list_multipart_uploads(
            Bucket=self.buckets[r]).get("Uploads", ())] for r in REGIONS}


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
def world(servers: dict[str, MotoServer], tmp_path: Path) -> World:
    tag = uuid.uuid4().hex[:10]
    buckets = {name: f"t-{tag}-{name}" for name in servers}
    w = World(tmp_path, {n: s.endpoint for n, s in servers.items()}, buckets)
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
