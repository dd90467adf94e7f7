"""`python -m bench.clients`: CPU per request of the data-path client, aiobotocore against obstore.

The small-object targets are bound by the client's CPU per request (see
docs/performance.md). This is the measured trial DESIGN.md plans before any
data path moves to obstore: the same PUTs and GETs of small objects against
one local endpoint, through the replicator's own ``S3Store`` (aiobotocore,
with Content-MD5, a sha256 checksum and If-Match, as the copier sends them)
and through obstore (sha256 checksum, etag checked against the md5; If-Match
on GET). Each client runs twice, alternating; CPU is this process's, all
threads.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import resource
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

from replicator.clients import Clients
from replicator.config import Endpoint, Retry
from replicator.retry import RequestRetry
from replicator.s3 import NewObject, S3Store
from replicator.verifier import digest

from . import data, servers
from .servers import ACCESS_KEY, SECRET_KEY

CONCURRENCY = 32


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _timed(calls: list[Callable[[], Awaitable[Any]]]) -> tuple[float, float]:
    """Wall and CPU seconds to run ``calls``, CONCURRENCY at a time."""
    slots = asyncio.Semaphore(CONCURRENCY)

    async def one(call: Callable[[], Awaitable[Any]]) -> None:
        async with slots:
            await call()
    wall, cpu = time.monotonic(), _cpu()
    await asyncio.gather(*(one(c) for c in calls))
    return time.monotonic() - wall, _cpu() - cpu


async def aiobotocore_run(url: str, bucket: str, bodies: list[bytes]) -> list[tuple[float, float]]:
    clients = Clients(pool_size=CONCURRENCY * 2)
    endpoint = Endpoint.model_validate({"bucket": bucket, "endpoint_url": url, "region": "us-east-1",
                                        "credentials": {"access_key_id": ACCESS_KEY,
                                                        "secret_access_key": SECRET_KEY}})
    store = S3Store("bench", await clients.client_for(endpoint), bucket, RequestRetry(Retry()))
    obj = NewObject({"ContentType": "application/octet-stream"}, {"owner": "bench"}, {}, None)
    try:
        async def put(i: int) -> None:
            sent = digest(bodies[i], "sha256")
            written = await store.put(f"k{i}", bodies[i], obj, md5=sent.md5_b64, checksum=sent.header,
                                      replacing=None)
            assert written.etag == sent.md5_hex

        async def get(i: int) -> None:
            _, body = await store.get(f"k{i}", if_match=hashlib.md5(bodies[i]).hexdigest())
            assert body == bodies[i]
        return [await _timed([partial(put, i) for i in range(len(bodies))]),
                await _timed([partial(get, i) for i in range(len(bodies))])]
    finally:
        await clients.close()


async def obstore_run(url: str, bucket: str, bodies: list[bytes]) -> list[tuple[float, float]]:
    import obstore
    from obstore.store import S3Store as ObStore

    store = ObStore(bucket, endpoint=url, region="us-east-1", access_key_id=ACCESS_KEY,
                    secret_access_key=SECRET_KEY, virtual_hosted_style_request=False,
                    checksum_algorithm="sha256", retry_config={"max_retries": 0},
                    client_options={"allow_http": True,
                                    "pool_max_idle_per_host": str(CONCURRENCY * 2)})
    attributes = {"Content-Type": "application/octet-stream", "owner": "bench"}

    async def put(i: int) -> None:
        result = await obstore.put_async(store, f"k{i}", bodies[i], attributes=attributes)
        assert result["e_tag"] is not None and result["e_tag"].strip('"') == \
            hashlib.md5(bodies[i]).hexdigest()

    async def get(i: int) -> None:
        etag = hashlib.md5(bodies[i]).hexdigest()
        got = await obstore.get_async(store, f"k{i}", options={"if_match": f'"{etag}"'})
        assert bytes(await got.bytes_async()) == bodies[i]
    return [await _timed([partial(put, i) for i in range(len(bodies))]),
            await _timed([partial(get, i) for i in range(len(bodies))])]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.clients", description=__doc__)
    parser.add_argument("--flavour", choices=servers.FLAVOURS, default="rclone")
    parser.add_argument("--objects", type=int, default=2000)
    parser.add_argument("--size", default="4KiB")
    args = parser.parse_args(argv)
    size = data.parse_size(args.size)
    bodies = [os.urandom(size) for _ in range(args.objects)]
    workdir = Path(tempfile.mkdtemp(prefix="bench-clients-"))
    endpoints = servers.start(args.flavour, workdir)
    target = endpoints[1]
    print(f"{args.objects:,} objects of {args.size}, {CONCURRENCY} at a time, on "
          f"{servers.FLAVOUR_LABEL[args.flavour]}")
    print(f"{'client':12}  {'PUT s':>6}  {'PUT ms CPU/req':>14}  {'GET s':>6}  {'GET ms CPU/req':>14}")
    try:
        for n, (name, run) in enumerate([("aiobotocore", aiobotocore_run), ("obstore", obstore_run)] * 2):
            bucket = f"clients-{n}"
            data.create_bucket(target, bucket)
            (put_wall, put_cpu), (get_wall, get_cpu) = asyncio.run(run(target.url, bucket, bodies))
            per = 1000 / args.objects
            print(f"{name:12}  {put_wall:6.2f}  {put_cpu * per:14.2f}  {get_wall:6.2f}  "
                  f"{get_cpu * per:14.2f}", flush=True)
            data.drop_bucket(target, bucket)
    finally:
        servers.stop(endpoints)
    return 0


if __name__ == "__main__":
    sys.exit(main())
