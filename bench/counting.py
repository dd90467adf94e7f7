"""Requests per object, counted by a reverse proxy in front of each endpoint.

The proxy (testing/faultproxy.py, every fault off) opens a fresh upstream
connection per request, which costs time, so counts come from a separate,
untimed run of each tool; the timed runs talk to the endpoints directly.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import parse_qs

from testing.faultproxy import FaultProxy

from .servers import Endpoint

#: Object-level operations that move the object's bytes; everything else is overhead.
READS = frozenset({"get"})
WRITES = frozenset({"put", "upload-part", "create-upload", "complete-upload"})


def operation(method: str, path_qs: str) -> str:
    """Name the S3 operation of a path-style request (bucket-level ones start with 'bucket')."""
    path, _, query = path_qs.partition("?")
    params = parse_qs(query, keep_blank_values=True)
    if "/" not in path.strip("/"):
        return f"bucket {method}" + (" ?uploads" if "uploads" in params else "")
    if "tagging" in params:
        return f"tagging {method}"
    if method == "PUT":
        return "upload-part" if "partNumber" in params else "put"
    if method == "POST":
        return "create-upload" if "uploads" in params else "complete-upload"
    if method == "DELETE" and "uploadId" in params:
        return "abort-upload"
    return method.lower()


@dataclass(frozen=True)
class Counts:
    """Requests seen at each endpoint, by operation, and the answers that were not 2xx."""

    by_endpoint: dict[str, collections.Counter[str]]
    refused: dict[str, collections.Counter[tuple[str, int | None]]]

    def per_object(self, name: str, objects: int) -> tuple[float, float, float]:
        """(byte-moving reads, byte-moving writes, other object-level requests) per object."""
        ops = self.by_endpoint[name]
        reads = sum(n for op, n in ops.items() if op in READS)
        writes = sum(n for op, n in ops.items() if op in WRITES)
        other = sum(n for op, n in ops.items()
                    if op not in READS | WRITES and not op.startswith("bucket"))
        return reads / objects, writes / objects, other / objects

    def bucket_level(self) -> int:
        return sum(n for ops in self.by_endpoint.values() for op, n in ops.items()
                   if op.startswith("bucket"))


@contextlib.contextmanager
def proxies(endpoints: list[Endpoint]) -> Iterator[tuple[dict[str, str], dict[str, FaultProxy]]]:
    """A counting proxy per endpoint; yields their URLs and the proxies, by endpoint name."""
    started: dict[str, FaultProxy] = {}
    try:
        for endpoint in endpoints:
            started[endpoint.name] = FaultProxy(endpoint.url).start()
        yield {name: p.endpoint for name, p in started.items()}, started
    finally:
        for proxy in started.values():
            proxy.stop()


def tally(started: dict[str, FaultProxy]) -> Counts:
    """Count what each proxy saw (status None: the connection dropped without an answer)."""
    ops: dict[str, collections.Counter[str]] = {}
    refused: dict[str, collections.Counter[tuple[str, int | None]]] = {}
    for name, proxy in started.items():
        ops[name], refused[name] = collections.Counter(), collections.Counter()
        for method, path, status in proxy.log:
            op = operation(method, path)
            ops[name][op] += 1
            if status is None or not 200 <= status < 300:
                refused[name][op, status] += 1
    return Counts(ops, refused)
