"""Workloads: deterministic keys and bytes, filling a source, and proving a region holds it all."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from .servers import ACCESS_KEY, SECRET_KEY, Endpoint

KiB, MiB = 1024, 1024 * 1024
#: Names that careless clients mangle: unicode (NFC), emoji, spaces, and URL, XML and shell
#: punctuation. Every one is also a valid file name, since rclone serve s3 stores keys as paths.
SUFFIXES = ("", "-ünïcødé", " with space", "+plus&amp=eq", "(paren)[bracket]{brace}",
            "~tilde!bang$dollar'quote", "%25percent", "#hash?query", "日本語", "🦀",
            "comma,semi;colon:at@")
_UNITS = {"": 1, "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3,
          "kib": KiB, "mib": MiB, "gib": 1024**3}


def parse_size(text: str) -> int:
    """'64MiB' -> 67108864: the same units the replicator's config accepts."""
    match = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", text)
    if not match or match.group(2).lower() not in _UNITS:
        raise ValueError(f"not a size: {text!r} (e.g. 16MiB)")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


@dataclass(frozen=True)
class Workload:
    name: str
    count: int
    size: int

    @property
    def label(self) -> str:
        unit, scale = next(((u, s) for u, s in (("MiB", MiB), ("KiB", KiB)) if self.size >= s),
                           ("B", 1))
        return f"{self.count:,} × {self.size / scale:g} {unit}"

    @property
    def total(self) -> int:
        return self.count * self.size

    def key(self, i: int) -> str:
        return f"{self.name}/d{i // 1000:03d}/{i:06d}{SUFFIXES[i % len(SUFFIXES)]}"

    def body(self, i: int) -> bytes:
        return hashlib.shake_256(f"{self.name}:{i}".encode()).digest(self.size)


@dataclass
class Manifest:
    """What the source holds: every key with its size and md5, and how to rebuild its bytes."""

    workload: Workload
    md5: dict[str, str] = field(default_factory=dict)
    index: dict[str, int] = field(default_factory=dict)
    _composite: dict[tuple[str, int], str] = field(default_factory=dict)

    def add(self, i: int, md5: str) -> None:
        key = self.workload.key(i)
        self.md5[key] = md5
        self.index[key] = i

    def etag_ok(self, key: str, etag: str, part_size: int) -> bool:
        """A single-part etag is the md5; a multipart one is the md5 of the part md5s, '-N'."""
        if "-" not in etag:
            return etag == self.md5[key]
        if (key, part_size) not in self._composite:
            body = self.workload.body(self.index[key])
            parts = [hashlib.md5(body[i:i + part_size]).digest()
                     for i in range(0, len(body), part_size)]
            self._composite[key, part_size] = \
                f"{hashlib.md5(b''.join(parts)).hexdigest()}-{len(parts)}"
        return etag == self._composite[key, part_size]


def client(url: str, pool: int = 16) -> Any:
    """A plain boto3 client for filling and checking (no checksums of its own to muddy counts)."""
    return boto3.client(
        "s3", endpoint_url=url, region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
        config=BotoConfig(max_pool_connections=pool, s3={"addressing_style": "path"},
                          request_checksum_calculation="when_required",
                          response_checksum_validation="when_required",
                          retries={"max_attempts": 3}, read_timeout=300))


def write_tree(root: Path, bucket: str, workload: Workload) -> Manifest:
    """Write the source straight into the directory rclone serves (before it starts serving)."""
    manifest = Manifest(workload)
    for i in range(workload.count):
        body = workload.body(i)
        path = root / bucket / workload.key(i)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        manifest.add(i, hashlib.md5(body).hexdigest())
    return manifest


def link_tree(source: Path, target: Path) -> None:
    """Hard-link a source bucket's files into a region: an identical replica that costs no
    bytes, and whose inodes show afterwards whether anything rewrote them."""
    target.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-al", "--", str(source), str(target)], check=True)


def remove_tree(path: Path) -> None:
    """rm -rf: several times faster than shutil.rmtree on the scale workload's 800,000 files."""
    subprocess.run(["rm", "-rf", "--", str(path)], check=True)


def rewritten(source: Path, target: Path, manifest: Manifest) -> tuple[int, list[str]]:
    """How many replicas no longer share the source's inode (were copied), and what is wrong."""
    copied, problems = 0, []
    for key, md5 in manifest.md5.items():
        try:
            if os.stat(target / key).st_ino == os.stat(source / key).st_ino:
                continue
            copied += 1
            if hashlib.md5((target / key).read_bytes()).hexdigest() != md5:
                problems.append(f"{key!r}: bytes differ")
        except FileNotFoundError:
            problems.append(f"{key!r}: missing")
    return copied, problems


def put_all(url: str, bucket: str, workload: Workload) -> Manifest:
    """Fill a source through the S3 API (moto keeps objects in its own process)."""
    manifest = Manifest(workload)
    s3 = client(url)
    s3.create_bucket(Bucket=bucket)

    def put(i: int) -> str:
        body = workload.body(i)
        s3.put_object(Bucket=bucket, Key=workload.key(i), Body=body)
        return hashlib.md5(body).hexdigest()
    with ThreadPoolExecutor(8) as pool:
        for i, md5 in enumerate(pool.map(put, range(workload.count))):
            manifest.add(i, md5)  # in key order, so the verified sample is the same every run
    return manifest


def create_bucket(endpoint: Endpoint, bucket: str) -> None:
    client(endpoint.url).create_bucket(Bucket=bucket)


def drop_bucket(endpoint: Endpoint, bucket: str) -> None:
    """Free what a run wrote: on disk for rclone, through the API for moto (it holds the bytes)."""
    if endpoint.root is not None:
        remove_tree(endpoint.root / bucket)
        return
    s3 = client(endpoint.url)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", ())]
        if keys:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
    s3.delete_bucket(Bucket=bucket)


def verify(endpoint: Endpoint, bucket: str, manifest: Manifest, *, sample: int,
           part_size: int, prefix: str = "") -> list[str]:
    """Every source key is there with its size and etag; a spread sample is read back whole.

    The etag of a single-part object is the md5 the server computed from the bytes
    it stored, so the listing proves every object; the sample reads bytes back
    end to end, which covers multipart replicas and the server's own bookkeeping.
    Only keys under ``prefix`` are compared, so one bucket can hold several manifests.
    """
    try:
        problems = _compare(client(endpoint.url), bucket, manifest, sample, part_size, prefix)
    except (BotoCoreError, ClientError) as exc:
        problems = [f"cannot verify: {exc}"]
    return [f"{endpoint.name}/{bucket}: {p}" for p in problems]


def _compare(s3: Any, bucket: str, manifest: Manifest, sample: int, part_size: int,
             prefix: str) -> list[str]:
    listed: dict[str, tuple[int, str]] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", ()):
            listed[o["Key"]] = (o["Size"], o["ETag"].strip('"'))
    problems = [f"missing {key!r}" for key in manifest.md5 if key not in listed]
    problems += [f"extra {key!r}" for key in listed if key not in manifest.md5]
    for key, (size, etag) in listed.items():
        if key not in manifest.md5:
            continue
        if size != manifest.workload.size:
            problems.append(f"{key!r}: size {size}, expected {manifest.workload.size}")
        elif not manifest.etag_ok(key, etag, part_size):
            problems.append(f"{key!r}: etag {etag}, expected md5 {manifest.md5[key]}")
    keys = list(manifest.md5)
    step = max(1, len(keys) // max(1, sample))
    for key in keys[::step][:sample]:
        if key in listed:
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            if hashlib.md5(body).hexdigest() != manifest.md5[key]:
                problems.append(f"{key!r}: bytes read back differ from the source")
    return problems
